"""Provisioned concurrency configs: what they may name, the concurrency rules, their lifetime."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from warren.errors import InvalidParameter, NotFound
from warren.provisioned import READY, Allocation
from warren.store.codes import CodeStore
from warren.store.registry import Registry


@pytest.fixture
def prefix(conn: redis.Redis, unique: str) -> Iterator[str]:
    prefix = f"test-{unique}"
    yield prefix
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)


@pytest.fixture
def reg(conn: redis.Redis, prefix: str, tmp_path: Path) -> Registry:
    registry = Registry(conn, CodeStore(conn, prefix), prefix, account_concurrency=10)
    (tmp_path / "app.py").write_text("def handler(e, c):\n    return e\n")
    for name in ("f", "g"):
        registry.create_function(name, code=tmp_path, handler="app.handler")
        registry.publish_version(name)
    registry.create_alias("f", "live", "1")
    return registry


def test_only_a_published_version_or_an_alias_may_be_provisioned(reg: Registry) -> None:
    for qualifier in (None, "$LATEST"):
        with pytest.raises(InvalidParameter, match="not \\$LATEST"):
            reg.provisioned.put("f", qualifier, 1)
    with pytest.raises(NotFound):
        reg.provisioned.put("f", "7", 1)
    with pytest.raises(NotFound):
        reg.provisioned.put("f", "nosuch", 1)
    with pytest.raises(InvalidParameter, match=">= 1"):
        reg.provisioned.put("f", "1", 0)
    reg.provisioned.put("f", "live", 2)
    reg.provisioned.put("f", "1", 1)
    assert [(c.key, c.requested) for c in reg.provisioned.all()] == [("f:1", 1), ("f:live", 2)]
    reg.provisioned.put("f", "live", 3)  # a second put replaces the number
    assert reg.provisioned.get("f", "live").requested == 3  # type: ignore[union-attr]
    reg.provisioned.delete("f", "live")
    with pytest.raises(NotFound):
        reg.provisioned.delete("f", "live")


def test_provisioned_may_not_exceed_the_reservation_nor_empty_the_account_pool(
    reg: Registry,
) -> None:
    # Given an account of 10, of which 5 must stay unreserved
    reg.set_concurrency("f", 3)
    reg.provisioned.put("f", "live", 2)
    with pytest.raises(InvalidParameter, match="may not exceed"):
        reg.provisioned.put("f", "1", 2)  # 2 + 2 > 3 reserved, over the function's configs
    with pytest.raises(InvalidParameter, match="may not exceed"):
        reg.set_concurrency("f", 1)  # a reservation below what is provisioned
    # Unreserved g may provision only what leaves the minimum: 10 - 3 reserved - 5 = 2
    reg.provisioned.put("g", "1", 2)
    with pytest.raises(InvalidParameter, match="must stay available"):
        reg.provisioned.put("g", "1", 3)
    with pytest.raises(InvalidParameter, match="must stay available"):
        reg.set_concurrency("f", 4)  # would shrink the unreserved pool under g's provisioning


def test_deleting_a_function_forgets_its_configs(reg: Registry) -> None:
    reg.provisioned.put("f", "live", 1)
    reg.provisioned.put("g", "1", 1)
    reg.delete_function("f")
    assert [c.key for c in reg.provisioned.all()] == ["g:1"]


def test_the_fleet_view_sums_the_workers_reports(reg: Registry) -> None:
    config = reg.provisioned.put("f", "live", 3)
    view = reg.provisioned.status([config], lambda _f: "default")[0]
    assert (view["state"], view["allocated"], view["ready"]) == ("IN_PROGRESS", 0, 0)
    assert "no live worker" in view["reason"]
    reg.provisioned.report("w1", {"f:live": Allocation(2, 2, "1")}, 10)
    reg.provisioned.report("w2", {"f:live": Allocation(1, 1, "1")}, 10)
    view = reg.provisioned.status([config], lambda _f: "default")[0]
    assert (view["state"], view["allocated"], view["ready"]) == (READY, 3, 3)
    reg.provisioned.report("w2", {"f:live": Allocation(1, 0, "1", "Runtime.ImportModuleError")}, 10)
    view = reg.provisioned.status([config], lambda _f: "default")[0]
    assert view["state"] == "FAILED" and "ImportModuleError" in view["reason"]
