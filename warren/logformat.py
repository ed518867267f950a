"""Invocation logs as Lambda's JSON log format: one object per line, for `warren logs -o json`
and for workers that also write them to stdout (`warren worker --log-stdout`).

START and REPORT become Lambda's system records (`platform.start`, `platform.report` with the
REPORT's metrics); END carries nothing REPORT does not, so it is left out; every other line
is the handler's output, an application record at level INFO. Each object also names its
`functionName`, which Lambda leaves to the log group: one stream here carries many functions.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

_REPORT = re.compile(r"([A-Za-z ]+): ([\d.]+) (?:ms|MB)")
_METRICS = {
    "Duration": "durationMs",
    "Billed Duration": "billedDurationMs",
    "Memory Size": "memorySizeMB",
    "Max Memory Used": "maxMemoryUsedMB",
    "Init Duration": "initDurationMs",
}


def iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def records(
    function: str, request_id: str, version: str, text: str, timestamp: float
) -> Iterator[dict[str, Any]]:
    """The JSON log records of one invocation's START…REPORT block."""
    when = iso(timestamp)
    for line in text.rstrip("\n").splitlines():
        if line.startswith("START RequestId: "):
            yield {"time": when, "type": "platform.start", "functionName": function,
                   "record": {"requestId": request_id, "version": version}}
        elif line.startswith("END RequestId: "):
            continue
        elif line.startswith("REPORT RequestId: "):
            yield {"time": when, "type": "platform.report", "functionName": function,
                   "record": _report(request_id, line)}
        else:
            yield {"timestamp": when, "level": "INFO", "message": line,
                   "requestId": request_id, "functionName": function}


def _report(request_id: str, line: str) -> dict[str, Any]:
    metrics: dict[str, float] = {}
    for name, number in _REPORT.findall(line):
        key = _METRICS.get(name.strip())
        if key:
            value = float(number)
            metrics[key] = int(value) if key != "durationMs" and key != "initDurationMs" else value
    status = "success"
    if "Status: timeout" in line:
        status = "timeout"
    elif "Status: error" in line:
        status = "error"
    record: dict[str, Any] = {"requestId": request_id, "metrics": metrics, "status": status}
    if status == "error" and "Error Type: " in line:
        record["errorType"] = line.split("Error Type: ", 1)[1].split("\t", 1)[0].strip()
    return record
