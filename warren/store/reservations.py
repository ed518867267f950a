"""Reserved concurrency: a Redis hash of function -> reservation, within the account's share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis

from warren.errors import InvalidParameter
from warren.keys import Keys
from warren.settings import DEFAULT_ACCOUNT_CONCURRENCY
from warren.store.redis import redis_errors


def unreserved_minimum(account_limit: int) -> int:
    """What must stay unreserved: Lambda's 100, or half (rounded up) of a smaller account."""
    return min(100, (account_limit + 1) // 2)


class Reservations:
    """`<prefix>:reservations`: a reservation is both a function's guarantee and its ceiling."""

    def __init__(
        self,
        redis: redis.Redis[bytes],
        prefix: str = "warren",
        account_concurrency: int = DEFAULT_ACCOUNT_CONCURRENCY,
    ) -> None:
        self._redis = redis
        self.key = Keys(prefix).reservations
        self.account_concurrency = account_concurrency
        # ProvisionedStore.check, set by the registry: provisioned concurrency must still fit.
        self.provisioned_check: Callable[[Any, dict[str, int], dict[str, Any]], None] | None = None

    def get(self, name: str) -> int | None:
        """The function's reservation, or None when it shares the unreserved pool."""
        with redis_errors("reserved concurrency", self._redis):
            raw = self._redis.hget(self.key, name)
        return None if raw is None else int(raw)

    def all(self) -> dict[str, int]:
        with redis_errors("reserved concurrency", self._redis):
            raw = self._redis.hgetall(self.key)
        return {k.decode(): int(v) for k, v in raw.items()}

    def check(self, conn: Any, name: str, n: int) -> None:
        """Refuse `n` for `name` if the account would keep less than its unreserved minimum.

        `conn` is the pipeline of a transaction that WATCHes this key, so the check and the
        write that follows are atomic.
        """
        current = {k.decode(): int(v) for k, v in conn.hgetall(self.key).items()}
        others = sum(v for k, v in current.items() if k != name)
        keep = unreserved_minimum(self.account_concurrency)
        available = self.account_concurrency - keep - others
        if n > available:
            raise InvalidParameter(
                f"cannot reserve {n} for {name}: the account limit is {self.account_concurrency}, "
                f"{keep} must stay unreserved and other functions reserve {others}; "
                f"at most {max(available, 0)} is available"
            )
        if self.provisioned_check is not None:
            self.provisioned_check(conn, {**current, name: n}, {})

    def summary(self) -> dict[str, Any]:
        """The account's view: limit, what must stay free, what is reserved and by whom."""
        reserved = self.all()
        return {
            "account_limit": self.account_concurrency,
            "unreserved_minimum": unreserved_minimum(self.account_concurrency),
            "reserved_total": sum(reserved.values()),
            "unreserved": self.account_concurrency - sum(reserved.values()),
            "reservations": reserved,
        }
