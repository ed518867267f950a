"""Count how often one sync invoke and one stream record cross between Warren's top-level rooms.

A traced call, not a guess from the import graph: a worker, and for the stream path a mapping
runner, run in this process under `sys.setprofile`/`threading.setprofile`; after a warm-up
call, every Python-level call into a Warren module is recorded per thread as the room of that
module (`warren` core, `warren.cli` as the composition root of its own, `broker_adapters`,
`router`, `workers`, `sandbox`). A crossing is one step in a thread's sequence from one room to
another. Also counts modules and their sizes, Redis error translators and files that use
pika's private names.

Runs against this checkout or an older one (`--repo DIR`, e.g. a git worktree of an earlier
commit): it imports whichever layout the tree has. Writes bench/results/crossings.json.
"""

from __future__ import annotations

import argparse
import importlib
import itertools
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOMS = ("warren", "broker_adapters", "router", "workers", "sandbox")
PIKA_PRIVATE = re.compile(
    r"\._impl\b|_frame_buffer|_on_data_available|_output_marshaled_frames|_flush_output"
    r"|_MAX_RECV_BYTES|\._transport\b"
)
TRANSLATOR = re.compile(r"def (store_errors|redis_errors)\b|class _RedisGuard\b")


def first(*names: str) -> Any:
    """The first of `module:attr` names that imports: the same script serves both layouts."""
    for name in names:
        module, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            continue
    raise ImportError(f"none of {names}")


class Tracer:
    """Records, per thread, the room of every Warren function called while armed."""

    def __init__(self, repo: Path) -> None:
        self.repo = str(repo)
        self.armed = False
        self.seqs: dict[int, list[str]] = defaultdict(list)
        self._rooms: dict[str, str | None] = {}

    def room(self, filename: str) -> str | None:
        known = self._rooms.get(filename, "?")
        if known != "?":
            return known
        room = None
        if filename.startswith(self.repo):
            rel = Path(filename).relative_to(self.repo).parts
            if rel and rel[0] in ROOMS:
                room = "warren.cli" if rel[:2] == ("warren", "cli") else rel[0]
        self._rooms[filename] = room
        return room

    def profile(self, frame: Any, event: str, _arg: Any) -> None:
        if not self.armed or event != "call":
            return
        room = self.room(frame.f_code.co_filename)
        if room is not None:
            seq = self.seqs[threading.get_ident()]
            if not seq or seq[-1] != room:
                seq.append(room)

    def crossings(self) -> dict[str, Any]:
        """Every change of room, and the changes between rooms when the core (the ground floor
        every room may stand on) is left out."""
        rooms_only = []
        for seq in self.seqs.values():
            kept = [r for r in seq if r != "warren"]
            rooms_only.append([r for i, r in enumerate(kept) if i == 0 or kept[i - 1] != r])
        edges = {(a, b) for seq in self.seqs.values() for a, b in itertools.pairwise(seq)}
        return {
            # Idle loops (a worker polling its connection) add to these counts between runs;
            # the distinct room-to-room steps do not, so they are the figure to compare.
            "distinct_steps": len(edges),
            "distinct_room_steps": len({(a, b) for a, b in edges if "warren" not in (a, b)}),
            "crossings": sum(max(0, len(s) - 1) for s in self.seqs.values()),
            "room_crossings": sum(max(0, len(s) - 1) for s in rooms_only),
            "threads": sum(1 for s in self.seqs.values() if len(s) > 1),
            "longest_sequence": max(self.seqs.values(), key=len, default=[]),
        }

    def install(self) -> None:
        sys.setprofile(self.profile)
        threading.setprofile(self.profile)


def static_figures(repo: Path) -> dict[str, Any]:
    modules = [p for room in ROOMS for p in (repo / room).rglob("*.py")]
    sizes = sorted(len(p.read_text().splitlines()) for p in modules)
    return {
        "modules": len(modules),
        "median_module_lines": statistics.median(sizes),
        "max_module_lines": sizes[-1],
        "redis_error_translators": sum(len(TRANSLATOR.findall(p.read_text())) for p in modules),
        "files_using_pika_internals": sorted(
            str(p.relative_to(repo)) for p in modules if PIKA_PRIVATE.search(p.read_text())
        ),
    }


def cache_dir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="crossings-cache-"))
    path.chmod(0o755)  # sandboxes run as unprivileged uids and read the unpacked code
    return path


def sync_path(tracer: Tracer, settings: Any, code: Path) -> dict[str, Any]:
    client_cls = first("warren.client:Client")
    build_worker = first("warren.cli.compose:build_worker", "warren.cli.process:build_worker")
    retry_policy = first("warren.cli.compose:retry_policy", "warren.cli.process:retry_policy")
    config_cls = first("workers.worker:WorkerConfig")
    config = config_cls(slots=1, cache_dir=cache_dir())
    stop = threading.Event()
    worker = build_worker(settings, config, retry_policy(os.environ))
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    with client_cls(settings=settings) as client:
        client.create_function("echo", code=code, handler="app.handler")
        thread.start()
        for _ in range(3):  # warm: connections, code cache, a warm sandbox, parked leases
            client.invoke("echo", {"n": 0})
        tracer.seqs.clear()
        tracer.armed = True
        result = client.invoke("echo", {"n": 1})
        time.sleep(0.05)  # the worker's finishing round trip and ack, after the reply
        tracer.armed = False
    assert result.payload == {"n": 1}, result
    stop.set()
    thread.join(timeout=30)
    return tracer.crossings()


def stream_path(tracer: Tracer, settings: Any, code: Path) -> dict[str, Any]:
    import redis

    build_worker = first("warren.cli.compose:build_worker", "warren.cli.process:build_worker")
    retry_policy = first("warren.cli.compose:retry_policy", "warren.cli.process:retry_policy")
    build_poller = first("warren.cli.compose:build_poller", "warren.cli.mapping:build_poller")
    client_cls = first("warren.client:Client")
    store_cls = first("warren.store.mappings:MappingStore", "warren.mapping:MappingStore")
    config = first("workers.worker:WorkerConfig")(
        slots=1, cache_dir=cache_dir()
    )
    stop = threading.Event()
    worker = build_worker(settings, config, retry_policy(os.environ))
    threading.Thread(target=worker.run, args=(stop,), daemon=True).start()
    rdb = redis.Redis.from_url(settings.redis.url)
    stream = f"{settings.prefix}-orders"
    with client_cls(settings=settings) as client:
        client.create_function("reader", code=code, handler="app.handler")
    store = store_cls(rdb, settings.prefix)
    spec = store.create(function="reader", source=f"redis+stream:///{stream}", batch_size=1)
    poller = build_poller(settings, lease_s=4.0)
    threading.Thread(target=poller.run, args=(stop,), daemon=True).start()

    def succeeded() -> int:
        return int(store.stats(spec.uuid).get("succeeded", 0))

    def one_record(n: int) -> None:
        before = succeeded()
        rdb.xadd(stream, {"data": json.dumps({"n": n})})
        deadline = time.monotonic() + 30
        while succeeded() <= before and time.monotonic() < deadline:
            time.sleep(0.05)

    for n in range(3):
        one_record(n)
    tracer.seqs.clear()
    tracer.armed = True
    one_record(99)
    time.sleep(0.3)
    tracer.armed = False
    stop.set()
    return tracer.crossings()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--label", default="")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    repo = args.repo.resolve()
    sys.path.insert(0, str(repo))
    assert Path(importlib.import_module("warren").__file__ or "").is_relative_to(repo), (
        "warren imports from elsewhere: run with PYTHONPATH=<repo>"
    )
    settings_cls = first("warren.settings:Settings")
    settings = settings_cls.from_environ(
        {**os.environ, "WARREN_PREFIX": f"cross{uuid.uuid4().hex[:8]}"}
    )
    code = Path(tempfile.mkdtemp(prefix="crossings-code-"))
    code.chmod(0o755)
    (code / "app.py").write_text("def handler(event, context):\n    return event\n")
    (code / "app.py").chmod(0o644)
    tracer = Tracer(repo)
    tracer.install()
    figures = {
        "label": args.label or str(repo),
        **static_figures(repo),
        "sync_invoke": sync_path(tracer, settings, code),
        "stream_record": stream_path(tracer, settings, code),
    }
    sys.setprofile(None)
    threading.setprofile(None)  # type: ignore[arg-type]
    print(json.dumps(figures, indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    os._exit(0)  # daemon threads of the in-process worker and poller end with the process


if __name__ == "__main__":
    main()
