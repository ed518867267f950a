"""Redeliveries: a queue's records lost with their connection run once more at most."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from router.batching.redelivery import Redeliveries
from warren.source import SourceRecord


class LossySource:
    """Only what Redeliveries asks of a queue source: which records are still alive."""

    def __init__(self) -> None:
        self.alive: set[int] = set()

    def live(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        return [r for r in records if id(r) in self.alive]


def rec(rid: str, redelivered: bool) -> SourceRecord:
    return SourceRecord(rid, b"x", {"redelivered": redelivered})


def test_records_of_a_dead_connection_are_dropped() -> None:
    source = LossySource()
    seen = Redeliveries("m")
    seen.bind(source)  # type: ignore[arg-type]
    a, b = rec("a", False), rec("b", False)
    source.alive = {id(a)}
    assert seen.live([a, b]) == [a]


def test_a_redelivery_waits_for_its_running_stale_copy_and_is_acked_when_that_succeeded() -> None:
    source = LossySource()
    seen = Redeliveries("m")
    seen.bind(source)  # type: ignore[arg-type]
    stale, other = rec("a", False), rec("b", False)
    seen.started([stale, other])
    # The connection dies; the broker redelivers "a" while its stale copy still runs.
    again = rec("a", True)
    source.alive = {id(again)}
    assert seen.sort([again]) == ([], [])  # held
    pending: deque = deque()
    seen.release(pending)
    assert [w.records for w in pending] == [[again]]
    # The stale batch succeeds but cannot be acked (its connection is gone).
    seen.finished([stale, other], [stale, other], seen.live([stale, other]))
    assert seen.sort([again]) == ([], [again])  # acked without a second run
    b_again = rec("b", True)
    assert seen.sort([b_again]) == ([], [b_again])
    later = rec("a", True)  # the stale success answered for one redelivery only
    assert seen.sort([later]) == ([later], [])


def test_a_new_message_with_the_same_id_runs_and_a_failed_stale_copy_leaves_its_redelivery_to_run(
) -> None:
    source = LossySource()
    seen = Redeliveries("m")
    seen.bind(source)  # type: ignore[arg-type]
    ok, bad = rec("ok", False), rec("bad", False)
    seen.started([ok, bad])
    seen.finished([ok, bad], [ok], [])  # "ok" succeeded stale, "bad" failed
    new = rec("ok", False)  # not a redelivery: a new message under the same id
    assert seen.sort([new]) == ([new], [])
    bad_again = rec("bad", True)
    assert seen.sort([bad_again]) == ([bad_again], [])
