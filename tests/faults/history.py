"""A fault run's history (what was accepted, run, completed, dead-lettered) and its checker."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Verdict:
    """What the checker found: counts per outcome, and how often handlers ran."""

    scenario: str
    accepted: int = 0
    completed: int = 0
    lost: int = 0
    duplicated: int = 0  # invocations completed (reported) more than once
    dead_lettered: int = 0
    runs: int = 0  # handler runs over all invocations
    extra_runs: int = 0  # runs beyond one per invocation
    max_runs: int = 0  # the most runs any one invocation had
    in_flight: int = 0  # invocations taken but not finished when the fault hit
    recovery_s: float | None = None  # from the service being back to work flowing again
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class History:
    """Accepted request ids, completion records and the handler's own run log."""

    def __init__(self, scenario: str, runs_file: Path) -> None:
        self.scenario = scenario
        self.runs_file = runs_file
        self.accepted: dict[str, int] = {}  # request id -> n
        self.fault_at: float | None = None
        self.back_at: float | None = None
        self.flowing_at: float | None = None

    def accept(self, results: list[Any], ns: list[int]) -> None:
        for result, n in zip(results, ns, strict=True):
            assert result.status_code == 202, result
            self.accepted[result.request_id] = n

    def runs(self) -> Counter[str]:
        try:
            text = self.runs_file.read_text()
        except FileNotFoundError:
            return Counter()
        return Counter(
            parts[0] for parts in map(str.split, text.splitlines()) if parts[2:3] == ["S"]
        )

    def max_overlap(self) -> int:
        """The most handler runs that were running at one moment (from their S/E lines)."""
        events: list[tuple[float, int]] = []
        for parts in map(str.split, self.runs_file.read_text().splitlines()):
            if len(parts) == 4:
                events.append((float(parts[3]), 1 if parts[2] == "S" else -1))
        running = peak = 0
        for _at, step in sorted(events, key=lambda e: (e[0], e[1])):
            running += step
            peak = max(peak, running)
        return peak

    def check(
        self, completions: list[str], dead: list[str] = (), in_flight: int = 0  # type: ignore[assignment]
    ) -> Verdict:
        done = Counter(completions)
        runs = self.runs()
        accepted = set(self.accepted)
        dead_set = set(dead)
        verdict = Verdict(self.scenario, accepted=len(accepted), in_flight=in_flight)
        verdict.completed = len(accepted & set(done))
        verdict.dead_lettered = len(accepted & dead_set)
        verdict.lost = len(accepted - set(done) - dead_set)
        verdict.duplicated = sum(1 for rid in accepted if done[rid] > 1)
        verdict.runs = sum(runs[rid] for rid in accepted)
        verdict.extra_runs = sum(max(0, runs[rid] - 1) for rid in accepted)
        verdict.max_runs = max((runs[rid] for rid in accepted), default=0)
        if self.back_at is not None and self.flowing_at is not None:
            verdict.recovery_s = round(max(0.0, self.flowing_at - self.back_at), 2)
        return verdict

    def mark_fault(self) -> None:
        self.fault_at = time.monotonic()

    def mark_back(self) -> None:
        self.back_at = time.monotonic()

    def mark_flowing(self) -> None:
        self.flowing_at = time.monotonic()


def save(verdict: Verdict, directory: Path | None) -> None:
    """Keep the verdict for bench/faults.py (WARREN_FAULT_RESULTS names the directory)."""
    if directory is None:
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{verdict.scenario}.json").write_text(json.dumps(verdict.as_dict(), indent=2))
