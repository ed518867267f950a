"""Where a sync round trip's CPU goes: py-spy profiles of the caller, the worker and its sandboxes.

Starts a router and a worker (2 slots) from a source tree (this one, or `--tree` for an older
checkout: `git worktree add /tmp/before <commit>`), a caller process that makes `--calls`
sequential sync invocations of a trivial function, and records all of them with py-spy
(non-idle samples only: py-spy counts a thread in a blocking send() or a short wait as
active, so a role's sampled time exceeds its CPU time, measured from /proc beside it) while
the calls run. Prints, per role (caller, worker, sandbox), the samples taken, the share of the run
they stand for, and the functions that hold the most of them (self and inclusive), and writes
the raw profiles and the summary under `--out` (default bench/results/profiles/<label>/).

Run: python3 bench/profile_sync.py --label after
     python3 bench/profile_sync.py --label before --tree /tmp/before
Needs py-spy (pip install py-spy) and root or ptrace rights over the processes.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HANDLER = "def handler(event, context):\n    return event\n"
CALLER = """
import os, sys, time
from pathlib import Path
from warren.client import Client
from warren.settings import Settings
client = Client.from_settings(Settings.from_environ(dict(os.environ)))
code = Path(sys.argv[1])
client.create_function("profiled", code=code, handler="app.handler")
deadline = time.monotonic() + 60
while True:
    try:
        client.invoke("profiled", {"warm": True}); break
    except Exception:
        if time.monotonic() > deadline: raise
        time.sleep(0.2)
for _ in range(300):
    client.invoke("profiled", {"warm": True})
print("ready", flush=True)
sys.stdin.readline()
start = time.perf_counter()
for n in range(int(sys.argv[2])):
    client.invoke("profiled", {"n": n})
print(f"done {time.perf_counter() - start:.4f}", flush=True)
client.close()
"""


def roles(
    raw: Path, pids: dict[int, str], default: str
) -> dict[str, collections.Counter[str]]:
    """Collapsed stacks → {role: Counter(stack → samples)}; a pid py-spy found under the worker
    (`--subprocesses`) that is not the worker itself is a sandbox."""
    out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        role = default
        frames = stack.split(";")
        while frames and frames[0].startswith("process "):  # py-spy names the ancestry
            pid = int(frames.pop(0).split()[1].split(":")[0])
            role = pids.get(pid, "sandbox")
        stack = ";".join(frames)
        out[role][stack] += int(count)
    return out


def frame_name(frame: str) -> str:
    # "func (path/to/file.py:123)" → "func (file.py)"
    name, _, where = frame.partition(" (")
    return f"{name} ({Path(where.rsplit(':', 1)[0]).name})" if where else name


def summarise(stacks: collections.Counter[str], top: int) -> dict[str, Any]:
    total = sum(stacks.values())
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        frames = [frame_name(f) for f in stack.split(";") if not f.startswith("thread ")]
        if frames:
            own[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    share = lambda n: round(100 * n / total, 1) if total else 0.0  # noqa: E731
    return {
        "samples": total,
        "self": [(name, share(n)) for name, n in own.most_common(top)],
        "inclusive": [(name, share(n)) for name, n in inclusive.most_common(top)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="the source tree to run")
    parser.add_argument("--label", default="after")
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--rate", type=int, default=1000, help="py-spy samples per second")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--native", action="store_true", help="C frames too (py-spy --native)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or ROOT / "bench" / "results" / "profiles" / args.label
    out.mkdir(parents=True, exist_ok=True)
    summary = run(args.tree.resolve(), out, args)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{args.label}: {summary['round_trip_ms']} ms per call, "
          f"CPU us/call {summary['cpu_us_per_call_own_process']}")
    for role, row in summary["roles"].items():
        print(f"\n{role}: {row['samples']} samples, {row['ms_sampled_per_call']} ms/call not idle")
        for name, pct in row["self"]:
            print(f"  {pct:5.1f}%  {name}")


def run(tree: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fleet up, caller ready, py-spy on both, the calls, everything stopped and deleted."""
    prefix = f"prof{uuid.uuid4().hex[:10]}"
    env = {
        **os.environ,
        "WARREN_AMQP_URL": os.environ.get("WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"),
        "WARREN_REDIS_URL": os.environ.get("WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "WARREN_PREFIX": prefix,
        "PYTHONPATH": str(tree),
    }
    code = Path(tempfile.mkdtemp(prefix="warren-prof-code-"))
    (code / "app.py").write_text(HANDLER)
    cache = Path("/var/tmp/warren-bench") / prefix

    def spawn(*argv: str, **kw: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([sys.executable, *argv], env=env, cwd=str(tree), text=True, **kw)

    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [spawn("-m", "warren", "router", **quiet),
             spawn("-m", "warren", "worker", "--slots", "2", "--cache-dir", str(cache), **quiet)]
    caller = spawn("-c", CALLER, str(code), str(args.calls),
                   stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    procs.append(caller)
    try:
        assert caller.stdout is not None and caller.stdin is not None
        if caller.stdout.readline().strip() != "ready":
            raise SystemExit("the caller did not get ready (is the fleet's tree runnable?)")
        targets = {"caller": caller.pid, "worker": procs[1].pid}
        spies = [_spy(role, pid, out, args) for role, pid in targets.items()]
        procs += spies
        time.sleep(1.5)  # py-spy attached
        before = {role: _cpu_s(pid) for role, pid in targets.items()}
        caller.stdin.write("go\n")
        caller.stdin.flush()
        wall = float(caller.stdout.readline().split()[1])
        cpu = {role: round(1e6 * (_cpu_s(pid) - before[role]) / args.calls, 1)
               for role, pid in targets.items()}
        for proc in spies:
            proc.send_signal(signal.SIGINT)
        for proc in spies:
            proc.wait(timeout=60)
    finally:
        _stop(procs)
        _cleanup(env, prefix, tree)
        shutil.rmtree(code, ignore_errors=True)
        shutil.rmtree(cache, ignore_errors=True)
    summary: dict[str, Any] = {
        "label": args.label, "tree": str(tree), "calls": args.calls,
        "round_trip_ms": round(1000 * wall / args.calls, 3),
        "cpu_us_per_call_own_process": cpu, "rate_hz": args.rate,
        "loadavg_1m": round(os.getloadavg()[0], 2), "roles": {},
    }
    pids = {caller.pid: "caller", procs[1].pid: "worker"}
    for role_file in ("caller", "worker"):
        for role, stacks in roles(out / f"{role_file}.txt", pids, role_file).items():
            row = summarise(stacks, args.top)
            row["ms_sampled_per_call"] = round(1000 * row["samples"] / args.rate / args.calls, 3)
            summary["roles"][role] = row
    return summary


def _spy(role: str, pid: int, out: Path, args: argparse.Namespace) -> subprocess.Popen[str]:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    cmd = [spy, "record", "--pid", str(pid), "--rate", str(args.rate), "--format", "raw",
           "--output", str(out / f"{role}.txt"), "--nonblocking"]
    if role == "worker":
        cmd.append("--subprocesses")  # its sandboxes
    if args.native:
        cmd.append("--native")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)


def _stop(procs: list[subprocess.Popen[str]]) -> None:
    """Stop what this run started, by PID: SIGTERM, then SIGKILL after 30 s."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _cleanup(env: dict[str, str], prefix: str, tree: str | Path) -> None:
    """Delete the run's queues and keys with the tree's own code (its Keys know its names)."""
    script = (
        "import os, redis\n"
        "from broker_adapters.amqp import Backbone\n"
        "from warren.keys import Keys\n"
        "from warren.settings import Settings\n"
        "s = Settings.from_environ(dict(os.environ)); k = Keys(os.environ['WARREN_PREFIX'])\n"
        "b = Backbone(s.amqp, k, name='prof-cleanup')\n"
        "names = list(k.all_queues()) + [getattr(k, 'sync_queue', lambda: None)()]\n"
        "[b.delete_queue(q) for q in names if q]\n"
        "b.close()\n"
        "r = redis.Redis.from_url(os.environ['WARREN_REDIS_URL'])\n"
        "ks = list(r.scan_iter(os.environ['WARREN_PREFIX'] + ':*'))\n"
        "r.delete(*ks) if ks else None\n"
    )
    subprocess.run([sys.executable, "-c", script], env=env, cwd=str(tree), check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


if __name__ == "__main__":
    main()
