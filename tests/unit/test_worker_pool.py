"""The warm sandbox pool: reuse per function version, LRU bound, dead ones discarded, reaping."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from warren.function import AsyncConfig, FunctionSpec
from workers.pool import SandboxPool


@dataclass
class FakeSandbox:
    """Stands in for sandbox.Sandbox (the pool only needs usable/invoke/close)."""

    spec: FunctionSpec
    alive: bool = True
    closed: bool = False

    @property
    def usable(self) -> bool:
        return self.alive and not self.closed

    def invoke(
        self, event: Any = None, *, payload: bytes | None = None, request_id: str | None = None
    ) -> Any:
        return None

    def close(self) -> None:
        self.closed = True
        self.alive = False


def spec(name: str = "f", version: str = "$LATEST") -> FunctionSpec:
    return FunctionSpec(
        name, "app.h", "python3.11", 128, 3, {}, "", "0" * 64, 1, version, AsyncConfig(), ""
    )


def make(max_idle: int = 2, idle_s: float = 300) -> tuple[SandboxPool, list[FakeSandbox]]:
    made: list[FakeSandbox] = []

    def factory(s: FunctionSpec, _dir: Path) -> FakeSandbox:
        made.append(FakeSandbox(s))
        return made[-1]

    return SandboxPool(factory, max_idle=max_idle, idle_s=idle_s), made


def test_a_warm_sandbox_is_reused_for_the_same_version_only() -> None:
    pool, made = make()
    key, sb = pool.checkout(spec(), Path("."))
    pool.checkin(key, sb)
    assert pool.checkout(spec(), Path("."))[1] is sb
    _key2, other = pool.checkout(spec(version="1"), Path("."))
    assert other is not sb and len(made) == 2
    changed = replace(spec(), env={"K": "V"})
    assert pool.checkout(changed, Path("."))[1] not in (sb, other)


def test_idle_sandboxes_are_bounded_least_recently_used_first() -> None:
    pool, made = make(max_idle=2)
    held = [pool.checkout(spec(f"f{n}"), Path(".")) for n in range(3)]
    for key, sb in held:
        pool.checkin(key, sb)
    assert made[0].closed and not made[1].closed and not made[2].closed
    assert pool.warm == 2


def test_a_dead_sandbox_is_discarded_and_replaced() -> None:
    pool, made = make()
    key, sb = pool.checkout(spec(), Path("."))
    sb.alive = False
    pool.checkin(key, sb)
    assert sb.closed
    assert pool.checkout(spec(), Path("."))[1] is not sb


def test_reap_closes_sandboxes_idle_too_long() -> None:
    pool, made = make(idle_s=0.0)
    key, sb = pool.checkout(spec(), Path("."))
    pool.checkin(key, sb)
    assert pool.reap() == 1 and sb.closed and pool.warm == 0
