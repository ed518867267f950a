"""The layout's rules that import-linter cannot see, checked on the source text."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ROOMS = ("warren", "broker_adapters", "router", "workers", "sandbox", "gateway")


def _modules(*rooms: str) -> list[Path]:
    return sorted(p for room in rooms for p in (ROOT / room).rglob("*.py"))


def _catches_redis(handler: ast.ExceptHandler) -> bool:
    text = ast.unparse(handler.type) if handler.type is not None else ""
    return bool(re.search(r"\bredis\.|RedisError|ResponseError|NoScriptError", text))


def test_only_the_redis_edge_and_the_adapters_catch_redis_exceptions() -> None:
    edge = ROOT / "warren" / "store" / "redis.py"
    offenders = []
    for path in _modules(*ROOMS):
        if path == edge or path.is_relative_to(ROOT / "broker_adapters"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ExceptHandler) and _catches_redis(node):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert offenders == [], "catch StoreUnavailable from warren.store.redis.redis_errors instead"


def test_the_redis_edge_check_sees_a_raw_except_clause() -> None:
    # Given a handler that catches redis-py's error directly, the check above flags it.
    tree = ast.parse("try:\n    pass\nexcept (ValueError, redis.RedisError):\n    pass\n")
    handler = next(n for n in ast.walk(tree) if isinstance(n, ast.ExceptHandler))
    assert _catches_redis(handler)


def test_no_module_is_longer_than_four_hundred_lines() -> None:
    long = [
        f"{p.relative_to(ROOT)} ({n})"
        for p in _modules(*ROOMS)
        if (n := len(p.read_text().splitlines())) > 400
    ]
    assert long == []


def test_no_undeclared_attributes_through_object_new_or_dict() -> None:
    pattern = re.compile(r"object\.__new__|\.__dict__\b")
    hits = [
        f"{p.relative_to(ROOT)}:{i}"
        for p in _modules("warren", "broker_adapters", "router", "workers", "gateway")
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line)
    ]
    assert hits == []


@pytest.mark.slow
def test_import_linter_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed in this environment")
    done = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert "0 broken" in done.stdout
