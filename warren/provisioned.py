"""Provisioned concurrency's contracts: a config, one worker's share of it, and its fleet status.

A config asks for N initialised sandboxes of one function version (named by a version number
or an alias). The workers of the function's pool divide N among themselves by a rule each can
compute alone (`share`), so no coordinator is needed and a dead worker's share moves to the
living as soon as its heartbeat expires.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from warren.errors import InvalidParameter
from warren.function import LATEST, check_alias_name, check_function_name, is_version

IN_PROGRESS, READY, FAILED = "IN_PROGRESS", "READY", "FAILED"


def check_target(function: str, qualifier: str | None) -> tuple[str, str]:
    """A published version or an alias: Lambda provisions neither $LATEST nor no qualifier."""
    check_function_name(function)
    if qualifier is None or qualifier == LATEST:
        raise InvalidParameter(
            "provisioned concurrency needs a published version or an alias (NAME:1, NAME:live), "
            "not $LATEST: publish a version first"
        )
    if not is_version(qualifier):
        check_alias_name(qualifier)
    return function, qualifier


def check_count(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidParameter(f"provisioned concurrency {n!r} is invalid: use a whole number >= 1")
    return n


@dataclass(frozen=True)
class ProvisionedConfig:
    """N sandboxes of `function:qualifier` kept initialised across the fleet."""

    function: str
    qualifier: str
    requested: int
    last_modified: str = ""

    @property
    def key(self) -> str:
        return f"{self.function}:{self.qualifier}"

    def to_dict(self) -> dict[str, Any]:
        return {"function": self.function, "qualifier": self.qualifier,
                "requested": self.requested, "last_modified": self.last_modified}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ProvisionedConfig:
        return cls(str(data["function"]), str(data["qualifier"]), int(data["requested"]),
                   str(data.get("last_modified") or ""))


@dataclass(frozen=True)
class Allocation:
    """What one worker holds of one config: its share, how many are ready, why not, if failed."""

    allocated: int
    ready: int
    version: str = ""
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"allocated": self.allocated, "ready": self.ready, "version": self.version,
                "error": self.error}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Allocation:
        return cls(int(data.get("allocated", 0)), int(data.get("ready", 0)),
                   str(data.get("version") or ""), data.get("error"))


def share(requested: int, workers: Sequence[str], me: str, key: str) -> int:
    """This worker's part of `requested`: an even split, the remainder rotated by config."""
    ordered = sorted(set(workers))
    if me not in ordered:
        return 0
    count = len(ordered)
    # The remainder goes to different workers for different configs, so that many configs of
    # N=1 do not all land on the first worker.
    rank = (ordered.index(me) - zlib.crc32(key.encode())) % count
    return requested // count + (1 if rank < requested % count else 0)


def summarise(
    config: ProvisionedConfig, reports: Iterable[Allocation], live_workers: int, pool: str
) -> dict[str, Any]:
    """The fleet's view of a config: requested, allocated, ready, state and a reason."""
    got = list(reports)
    allocated = sum(a.allocated for a in got)
    ready = sum(a.ready for a in got)
    errors = sorted({a.error for a in got if a.error})
    if errors:
        state, reason = FAILED, "; ".join(errors)
    elif ready >= config.requested:
        state, reason = READY, None
    elif live_workers == 0:
        state, reason = IN_PROGRESS, f"no live worker of pool {pool!r}"
    else:
        state, reason = IN_PROGRESS, None
    versions = sorted({a.version for a in got if a.version})
    return {**config.to_dict(), "allocated": allocated, "ready": ready, "state": state,
            "reason": reason, "versions": versions}
