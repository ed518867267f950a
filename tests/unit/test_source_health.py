"""A failing source's waits double up to their cap; one log line per change of reason."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from router.batching import health
from router.batching.health import SourceHealth
from router.batching.invoker import FleetInvoker
from warren.errors import BrokerUnavailable, NotFound, WarrenError


def test_an_outage_is_retried_within_seconds_and_a_broken_source_up_to_five_minutes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="warren.poller")
    outage = SourceHealth("m1")
    waits = [outage.failed(BrokerUnavailable("down"), "cannot open") for _ in range(8)]
    assert waits[:4] == [1.0, 2.0, 4.0, 8.0] and max(waits) == 30.0
    broken = SourceHealth("m2")
    waits = [broken.failed(NotFound("queue 'q' is gone"), "failed") for _ in range(10)]
    assert waits[0] == 5.0 and max(waits) == 300.0
    # one line per reason, however many retries
    assert caplog.text.count("mapping m1") == 1 and caplog.text.count("mapping m2") == 1


def test_a_source_that_served_a_while_starts_its_waits_over(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="warren.poller")
    clock = [100.0]
    monkeypatch.setattr(health.time, "monotonic", lambda: clock[0])
    source = SourceHealth("m3")
    source.failed(BrokerUnavailable("down"), "x")
    source.failed(BrokerUnavailable("down"), "x")
    source.serving()
    clock[0] += health.SETTLED_S + 1
    source.serving()
    assert "healthy again after 2 failure(s)" in caplog.text
    assert source.failed(BrokerUnavailable("down"), "x") == 1.0


def test_a_password_in_a_failure_reason_is_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="warren.poller")
    SourceHealth("m4").failed(WarrenError("amqp://u:s3cret@h/q refused"), "x")
    assert "s3cret" not in caplog.text and "u:***@" in caplog.text


class _Gone:
    def start(self, name: str, event: Any, qualifier: str | None = None) -> Any:
        raise NotFound(f"function {name} does not exist")

    def close(self) -> None:
        pass


def test_a_mapping_whose_function_was_deleted_says_so_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="warren.poller")
    invoker = FleetInvoker(_Gone)  # type: ignore[arg-type]
    replies = [invoker.invoke("orders", {}) for _ in range(5)]
    assert all(not r.ok and "Function not found" in (r.error or "") for r in replies)
    assert caplog.text.count("no longer exists") == 1
