"""Provisioned concurrency without services: the share rule and the pool's reserve."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from warren.function import FunctionSpec
from warren.observe.metrics import Registry as MetricsRegistry
from warren.provisioned import share
from workers.metrics import provisioned_collector
from workers.pool import SandboxPool, sandbox_key
from workers.reserve import Reserve


def test_the_shares_of_the_live_workers_add_up_and_differ_by_at_most_one() -> None:
    workers = ["w1", "w2", "w3"]
    for n in range(0, 11):
        for key in ("f:1", "g:live", "h:2"):
            parts = [share(n, workers, w, key) for w in workers]
            assert sum(parts) == n and max(parts) - min(parts) <= 1
    assert share(5, ["w1"], "w1", "f:1") == 5
    assert share(5, ["w1"], "w2", "f:1") == 0  # not live: none
    # The remainder of different configs falls on different workers
    ones = {k: [share(1, workers, w, k) for w in workers].index(1) for k in ("a:1", "b:1", "c:1",
                                                                             "d:1", "e:1")}
    assert len(set(ones.values())) > 1


class Fake:
    def __init__(self, name: str) -> None:
        self.name, self.usable, self.closed = name, True, False

    def close(self) -> None:
        self.closed, self.usable = True, False

    def invoke(self, *a: Any, **k: Any) -> Any:
        return None

    def start(self, wait: bool = False) -> str | None:
        return None


def test_invocations_take_provisioned_sandboxes_first_and_give_them_back() -> None:
    made: list[Fake] = []

    def factory(spec: Any, code_dir: Any) -> Fake:
        made.append(Fake(f"ondemand{len(made)}"))
        return made[-1]

    spec = FunctionSpec.from_dict({"name": "f", "handler": "app.h", "runtime": "python3.11",
                                   "memory_mb": 128, "timeout_s": 3, "code_sha256": "a" * 64,
                                   "code_size": 1, "version": "1"})
    pool = SandboxPool(factory)  # type: ignore[arg-type]
    ready = Fake("provisioned")
    pool.reserve.add(sandbox_key(spec), ready)
    key, first = pool.checkout(spec, Path("/code"))
    _, second = pool.checkout(spec, Path("/code"))  # past N: spill-over to on-demand
    assert first is ready and second is made[0]
    pool.checkin(key, first)
    pool.checkin(key, second)
    assert pool.reserve.counts(key) == (1, 1) and pool.busy == 0
    assert pool.checkout(spec, Path("/code"))[1] is ready  # the provisioned one first, again
    assert pool.reserve.served == {("f", "1"): 2} and pool.reserve.spilled == {("f", "1"): 1}
    assert pool.reserve.usage() == {("f", "1"): (1, 1)}  # one provisioned, running now
    registry = MetricsRegistry()
    provisioned_collector(registry, pool.reserve)
    text = registry.render()
    assert 'warren_provisioned_invocations_total{function="f",version="1"} 2' in text
    assert 'warren_provisioned_spillover_invocations_total{function="f",version="1"} 1' in text
    assert 'warren_provisioned_utilization{function="f",version="1"} 1' in text
    # Trimming closes idle extras now, busy ones when they come back
    extra = Fake("p2")
    pool.reserve.add(key, extra)
    pool.reserve.trim(key, 0)
    assert extra.closed and not ready.closed
    pool.checkin(key, ready)
    assert ready.closed and pool.reserve.counts(key) == (0, 0)


def test_a_failed_provisioned_sandbox_is_dropped_and_after_close_none_is_kept() -> None:
    reserve = Reserve()
    sick = Fake("sick")
    reserve.add("k", sick)
    assert reserve.take("k") is sick
    sick.usable = False
    assert reserve.give_back("k", sick) and sick.closed and reserve.counts("k") == (0, 0)
    assert not reserve.give_back("k", Fake("stranger"))
    dying = Fake("dying")
    reserve.add("k", dying)
    dying.alive = False  # type: ignore[attr-defined]
    assert reserve.drop_dead() == 1 and dying.closed and reserve.counts("k") == (0, 0)
    reserve.close()
    late = Fake("late")
    reserve.add("k", late)
    assert late.closed and reserve.counts("k") == (0, 0)
