"""pika only in broker_adapters/, its private internals only in amqp_fastpath.py (source text)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("warren", "router", "workers", "sandbox")
# pika's private names; the generic ones (`_sock`, `_state`) only count on another object.
PIKA_PRIVATE = {
    "_impl", "_transport", "_frame_buffer", "_on_data_available", "_output_marshaled_frames",
    "_flush_output", "_MAX_RECV_BYTES", "_STATE_ACTIVE", "bytes_sent", "frames_sent",
    "bytes_received", "frames_received",
}
GENERIC_PRIVATE = {"_sock", "_state"}


def _private_uses(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if node.attr in PIKA_PRIVATE or (
                node.attr in GENERIC_PRIVATE and owner not in ("self", "cls")
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} .{node.attr}")
        elif isinstance(node, ast.Constant) and node.value in PIKA_PRIVATE | GENERIC_PRIVATE:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    return found


def test_no_module_but_amqp_fastpath_uses_pika_internals():
    offenders = [
        use
        for path in sorted((ROOT / "broker_adapters").rglob("*.py"))
        if path.name != "amqp_fastpath.py"
        for use in _private_uses(path)
    ]
    assert offenders == []
    # The checker does see them where they are.
    assert _private_uses(ROOT / "broker_adapters" / "amqp_fastpath.py")


def test_no_room_but_broker_adapters_imports_pika():
    offenders = []
    for room in ROOMS:
        for path in sorted((ROOT / room).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = (
                    [a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module or ""] if isinstance(node, ast.ImportFrom) else []
                )
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno}" for n in names
                              if n == "pika" or n.startswith("pika.")]
    assert offenders == []
