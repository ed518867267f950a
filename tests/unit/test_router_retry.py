"""Lambda's async retry policy: attempts, backoff, event age."""

from __future__ import annotations

import time

import pytest

from router.retry import RetryPolicy
from warren.errors import ConfigError
from warren.function import AsyncConfig, FunctionSpec
from warren.invocation import EVENT, Invocation


def inv(attempt: int, max_retries: int = 2, age_s: float = 0, max_age: int = 21600) -> Invocation:
    spec = FunctionSpec(
        "f",
        "app.h",
        "python3.11",
        128,
        3,
        {},
        "",
        "0" * 64,
        1,
        "$LATEST",
        AsyncConfig(max_retries=max_retries, max_event_age_s=max_age),
        "",
    )
    return Invocation("rid", spec, b"{}", EVENT, attempt=attempt, accepted_at=time.time() - age_s)


def test_two_retries_with_lambda_backoff_then_exhausted() -> None:
    policy = RetryPolicy()
    assert policy.after_failure(inv(1)).delay_s == 60
    assert policy.after_failure(inv(2)).delay_s == 120
    final = policy.after_failure(inv(3))
    assert not final.retry and final.condition == "RetriesExhausted"


def test_zero_retries_gives_up_after_the_first_attempt() -> None:
    decision = RetryPolicy().after_failure(inv(1, max_retries=0))
    assert not decision.retry and decision.condition == "RetriesExhausted"


def test_a_retry_that_would_pass_max_event_age_is_not_made() -> None:
    decision = RetryPolicy().after_failure(inv(1, age_s=30, max_age=60))
    assert not decision.retry and decision.condition == "EventAgeExceeded"
    assert RetryPolicy().expired(inv(1, age_s=61, max_age=60))
    assert not RetryPolicy().expired(inv(1, age_s=10, max_age=60))


def test_retry_delays_parse_and_reject_nonsense() -> None:
    assert RetryPolicy.parse_delays("0.2, 0.4") == (0.2, 0.4)
    for bad in ("", "a,b", "-1"):
        with pytest.raises(ConfigError):
            RetryPolicy.parse_delays(bad)
