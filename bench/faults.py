"""Run the fault suite (tests/faults/) and publish what it measured in docs/reliability.md.

Each fault test saves its checker's verdict (accepted, completed, lost, duplicated,
dead-lettered, handler runs, recovery time) as JSON when WARREN_FAULT_RESULTS names a
directory. This script runs the suite with that set, gathers the verdicts into
bench/results/faults.json and rewrites the table between the markers in docs/reliability.md.
`--report-only` rewrites the table from the last bench/results/faults.json without running.
The tests start their own RabbitMQ nodes and Redis servers (never the shared ones).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "faults.json"
DOC = ROOT / "docs" / "reliability.md"
BEGIN, END = "<!-- faults:begin -->", "<!-- faults:end -->"

#: scenario -> (the fault, what Warren promises under it)
SCENARIOS: dict[str, tuple[str, str]] = {
    "broker_restart-redis": (
        "RabbitMQ restarted (`stop_app`, 3 s, `start_app`) under async load",
        "nothing lost; re-runs only of chunks in flight; no process restart",
    ),
    "broker_restart-amqp": (
        "the same, successes sent to a queue on that broker (issue 13's storm)",
        "as above: a worker that cannot finish holds its chunk, never re-runs it in a loop",
    ),
    "broker_kill9-redis": (
        "RabbitMQ killed with -9 and started again under async load",
        "nothing lost (quorum queues: confirmed means on disk); at most one re-run each",
    ),
    "broker_close_connections-redis": (
        "`rabbitmqctl close_all_connections` under async load",
        "nothing lost; every process reconnects at once",
    ),
    "broker_refuses_finish": (
        "a channel closed by a broker error (PRECONDITION_FAILED on a retry's delay queue) "
        "for 8 s",
        "the chunk is held, not re-run; it finishes once the broker accepts",
    ),
    "redis_restart": (
        "Redis restarted (down 3 s) under async load",
        "nothing lost; nothing re-run (workers hold what they ran until Redis is back)",
    ),
    "blackhole_rabbitmq": (
        "a worker's packets to RabbitMQ dropped for 25 s (no RST), then flowing again",
        "nothing lost; the silent connection is noticed by heartbeats, work requeued once",
    ),
    "blackhole_redis": (
        "a worker's packets to Redis dropped for 25 s, then flowing again",
        "nothing lost; commands time out, are retried, the chunk is held meanwhile",
    ),
    "frozen_worker": (
        "a worker SIGSTOPped for 40 s (past its leases and heartbeats), then SIGCONT",
        "concurrency over the limit by at most the frozen worker's leases; its taken-over "
        "work neither acked nor reported by it (fencing token)",
    ),
    "worker_kill9": (
        "a worker killed with -9 under async load, another started",
        "its chunks run again elsewhere, once",
    ),
    "router_kill9": (
        "a router killed with -9 under async load, another started",
        "nothing lost, nothing re-run",
    ),
    "sync_caller_broker_restart": (
        "sync callers across a RabbitMQ restart",
        "on the Redis lane, calls answered throughout; on RabbitMQ's lane a clear error while "
        "it is down, and the same client works again within seconds",
    ),
    "stream_mapping_redis_restart": (
        "a Redis-stream event source mapping across a restart of the Redis holding the stream "
        "and the sync lane",
        "every record reaches the handler; only the batch in flight at the fault runs again, "
        "once",
    ),
    "queue_mapping_broker_restart": (
        "a RabbitMQ-queue event source mapping across a broker restart",
        "every message reaches the handler; a message runs again only on a real redelivery, "
        "once at most (records of the dead connection are dropped, not invoked or acked)",
    ),
    "cluster_leader_stopped": (
        "3-broker cluster (quorum queues): the work queue's leader stopped mid-run",
        "nothing lost; processes fail over to the other brokers",
    ),
}


def run_suite(results_dir: Path, select: str | None) -> int:
    env = {**os.environ, "WARREN_FAULT_RESULTS": str(results_dir)}
    argv = [sys.executable, "-m", "pytest", "tests/faults", "-q", "-p", "no:cacheprovider"]
    if select:
        argv += ["-k", select]
    return subprocess.run(argv, cwd=ROOT, env=env, check=False).returncode


def gather(results_dir: Path, exit_code: int, seconds: float) -> dict[str, Any]:
    verdicts = {}
    for path in sorted(results_dir.glob("*.json")):
        verdict = json.loads(path.read_text())
        verdicts[verdict["scenario"]] = verdict
    return {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "suite_exit_code": exit_code,
        "suite_seconds": round(seconds),
        "verdicts": verdicts,
    }


def _cell(value: Any) -> str:
    return "–" if value is None else str(value)


def table(report: dict[str, Any]) -> str:
    rows = [
        "| scenario | fault | promise | accepted | lost | duplicated | dead-lettered "
        "| re-runs (max per invocation) | recovery s |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = report["verdicts"]
    for name, (fault, promise) in SCENARIOS.items():
        v = verdicts.get(name)
        if v is None:
            rows.append(f"| `{name}` | {fault} | {promise} | not run | | | | | |")
            continue
        reruns = f"{v['extra_runs']} ({v['max_runs']})" if v["accepted"] else "–"
        rows.append(
            f"| `{name}` | {fault} | {promise} | {v['accepted'] or '–'} | {v['lost']} "
            f"| {v['duplicated']} | {v['dead_lettered']} | {reruns} "
            f"| {_cell(v.get('recovery_s'))} |"
        )
    notes = [f"- `{n}`: {'; '.join(v['notes'])}" for n, v in verdicts.items() if v.get("notes")]
    head = (
        f"Last run: {report['when']} on {report['machine']} (Python {report['python']}), "
        f"suite exit code {report['suite_exit_code']}, {report['suite_seconds']} s."
    )
    return "\n".join([head, "", *rows, *([""] + notes if notes else [])])


def write_doc(report: dict[str, Any]) -> None:
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + table(report) + "\n" + text[end:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--report-only", action="store_true",
                        help="rewrite docs/reliability.md from bench/results/faults.json")
    parser.add_argument("-k", dest="select", help="only the fault tests matching (pytest -k)")
    args = parser.parse_args()
    if args.report_only:
        write_doc(json.loads(RESULTS.read_text()))
        return 0
    with tempfile.TemporaryDirectory(prefix="warren-faults-") as tmp:
        started = time.monotonic()
        code = run_suite(Path(tmp), args.select)
        report = gather(Path(tmp), code, time.monotonic() - started)
    if args.select and RESULTS.exists():  # a subset updates its rows of the last full run
        last = json.loads(RESULTS.read_text())
        report["verdicts"] = {**last["verdicts"], **report["verdicts"]}
        report["suite_seconds"] = last["suite_seconds"]
        report["suite_exit_code"] = max(code, last["suite_exit_code"])
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    write_doc(report)
    print(table(report))
    return code


if __name__ == "__main__":
    raise SystemExit(main())
