"""Code bundles nothing runs any more leave Redis (after a grace period); shared ones stay."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from warren.store.coderefs import GRACE_S
from warren.store.codes import CodeStore
from warren.store.registry import Registry


@pytest.fixture
def prefix(conn: redis.Redis, unique: str) -> Iterator[str]:
    prefix = f"test-{unique}"
    yield prefix
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)


def registry(conn: redis.Redis, prefix: str) -> Registry:
    return Registry(conn, CodeStore(conn, prefix), prefix)


def code(tmp_path: Path, body: str = "return event") -> Path:
    root = tmp_path / f"code-{abs(hash(body))}"
    root.mkdir(exist_ok=True)
    (root / "app.py").write_text(f"def handler(event, context):\n    {body}\n")
    return root


def ttl(conn: redis.Redis, reg: Registry, sha256: str) -> int:
    """-1: kept for good; > 0: expiring; -2: gone."""
    return int(conn.ttl(reg.codes.key(sha256)))


def test_a_bundle_shared_by_two_functions_expires_only_when_both_are_gone(
    conn: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    reg = registry(conn, prefix)
    one = reg.create_function("one", code=code(tmp_path), handler="app.handler")
    two = reg.create_function("two", code=code(tmp_path), handler="app.handler")
    assert one.code_sha256 == two.code_sha256
    assert ttl(conn, reg, one.code_sha256) == -1
    reg.delete_function("one")
    assert ttl(conn, reg, one.code_sha256) == -1  # "two" still runs it
    reg.delete_function("two")
    assert 0 < ttl(conn, reg, one.code_sha256) <= GRACE_S


def test_new_code_replaces_the_old_bundle_unless_a_version_still_runs_it(
    conn: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    reg = registry(conn, prefix)
    a = reg.create_function("f", code=code(tmp_path, "return 'a'"), handler="app.handler")
    b = reg.update_function("f", code=code(tmp_path, "return 'b'"))
    assert ttl(conn, reg, a.code_sha256) > 0 and ttl(conn, reg, b.code_sha256) == -1
    reg.publish_version("f")  # version 1 runs b
    c = reg.update_function("f", code=code(tmp_path, "return 'c'"))
    assert ttl(conn, reg, b.code_sha256) == -1  # version 1 keeps it
    assert ttl(conn, reg, c.code_sha256) == -1
    reg.update_function("f", memory_mb=256)  # no code change: nothing moves
    assert ttl(conn, reg, c.code_sha256) == -1
    reg.delete_function("f")
    assert ttl(conn, reg, b.code_sha256) > 0 and ttl(conn, reg, c.code_sha256) > 0


def test_code_going_back_to_an_expiring_bundle_keeps_it(
    conn: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    reg = registry(conn, prefix)
    a = reg.create_function("f", code=code(tmp_path, "return 'a'"), handler="app.handler")
    reg.update_function("f", code=code(tmp_path, "return 'b'"))
    assert ttl(conn, reg, a.code_sha256) > 0
    reg.update_function("f", code=code(tmp_path, "return 'a'"))  # a rollback
    assert ttl(conn, reg, a.code_sha256) == -1


def test_a_bundle_no_write_referenced_expires_by_itself(
    conn: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    reg = registry(conn, prefix)
    sha256, _size = reg.codes.put(code(tmp_path))  # as an aborted create leaves it
    assert 0 < ttl(conn, reg, sha256) <= GRACE_S


def test_references_are_built_from_specs_stored_before_they_existed(
    conn: redis.Redis, prefix: str, tmp_path: Path
) -> None:
    reg = registry(conn, prefix)
    one = reg.create_function("one", code=code(tmp_path), handler="app.handler")
    reg.create_function("two", code=code(tmp_path), handler="app.handler")
    # a store written before reference sets: no sets, no marker
    conn.delete(*conn.scan_iter(f"{prefix}:coderefs*"))
    fresh = registry(conn, prefix)
    fresh.delete_function("one")
    assert ttl(conn, fresh, one.code_sha256) == -1  # "two" was found and still runs it
    assert conn.smembers(fresh.refs.key(one.code_sha256)) == {b"two|$LATEST"}
