"""Reading one invocation's reply the way Lambda does: what is done, what failed, what runs next."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from router.batching.invoker import InvokeReply
from warren.source import SourceRecord


@dataclass
class Verdict:
    """The outcome of one batch.

    `succeeded` are done (commit them). `failed` are the records the function failed on: each
    spends one attempt of the retry quota when `counts_attempt`. `next` are the batches to run
    again, in order. A batch that never reached the function (`reached` False) spends nothing.
    """

    succeeded: list[SourceRecord] = field(default_factory=list)
    failed: list[SourceRecord] = field(default_factory=list)
    next: list[list[SourceRecord]] = field(default_factory=list)
    counts_attempt: bool = False
    reached: bool = True
    reason: str = "OK"


def failed_identifiers(payload: Any, ids: set[str]) -> set[str] | None:
    """The itemIdentifiers a partial-batch response names; None when the response is malformed.

    Lambda's rules: a null or empty response, or a null or empty `batchItemFailures`, is a
    complete success; an item whose `itemIdentifier` is missing, null, empty or not one of the
    batch's records makes the whole response invalid, i.e. a complete failure.
    """
    if payload is None or payload == "" or not isinstance(payload, dict):
        return set()
    items = payload.get("batchItemFailures")
    if items is None:
        return set()
    if not isinstance(items, list):
        return None
    failed: set[str] = set()
    for item in items:
        if not isinstance(item, dict):
            return None
        ident = item.get("itemIdentifier")
        if not isinstance(ident, str) or not ident or ident not in ids:
            return None
        failed.add(ident)
    return failed


def _whole_failure(records: list[SourceRecord], bisect: bool, reason: str) -> Verdict:
    if bisect and len(records) > 1:
        # Lambda: splitting a failed batch does not spend the retry quota.
        half = len(records) // 2
        return Verdict(next=[records[:half], records[half:]], reason=f"{reason} (bisected)")
    return Verdict(failed=list(records), next=[list(records)], counts_attempt=True, reason=reason)


def judge(
    reply: InvokeReply,
    records: Sequence[SourceRecord],
    *,
    ordered: bool,
    report_item_failures: bool,
    bisect: bool,
) -> Verdict:
    batch = list(records)
    if not reply.ok:
        return Verdict(next=[batch], reached=False, reason=reply.error or "not invoked")
    if reply.function_error is not None:
        return _whole_failure(batch, bisect, "PROBLEM: Function call failed")
    if not report_item_failures:
        return Verdict(succeeded=batch)
    failed_ids = failed_identifiers(reply.payload, {r.id for r in batch})
    if failed_ids is None:
        return _whole_failure(batch, bisect, "PROBLEM: Invalid batchItemFailures response")
    if not failed_ids:
        return Verdict(succeeded=batch)
    if ordered:
        # Streams checkpoint at the lowest failed record and retry everything after it.
        lowest = min(i for i, r in enumerate(batch) if r.id in failed_ids)
        rest = batch[lowest:]
        return Verdict(
            succeeded=batch[:lowest],
            failed=[r for r in rest if r.id in failed_ids],
            next=[rest],
            counts_attempt=True,
            reason="PROBLEM: Partial batch failure",
        )
    failed = [r for r in batch if r.id in failed_ids]
    return Verdict(
        succeeded=[r for r in batch if r.id not in failed_ids],
        failed=failed,
        next=[failed],
        counts_attempt=True,
        reason="PROBLEM: Partial batch failure",
    )
