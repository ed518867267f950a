"""A worker's code cache on disk: bundles unused for the TTL leave it, bundles in use never do."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from click.testing import CliRunner

from warren.cli import cli
from warren.store.codes import CodeStore
from workers.codecache import LOCK_NAME, MIN_TTL_S, SCRATCH_TTL_S, CodeCache

TTL = 3600.0


@pytest.fixture
def store(conn: redis.Redis, unique: str) -> Iterator[CodeStore]:
    prefix = f"test-{unique}"
    yield CodeStore(conn, prefix)
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)


def bundle(store: CodeStore, tmp_path: Path, body: str) -> str:
    src = tmp_path / f"src-{abs(hash(body))}"
    src.mkdir()
    (src / "app.py").write_text(f"def handler(event, context):\n    return {body!r}\n")
    return store.put(src)[0]


def sharing(store: CodeStore, tmp_path: Path) -> tuple[CodeCache, CodeCache]:
    """Two workers' caches on one directory, as the workers of one machine share it."""
    root = tmp_path / "cache"
    return CodeCache(store, root, ttl_s=TTL), CodeCache(store, root, ttl_s=TTL)


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_a_bundle_unused_for_the_ttl_is_removed_and_one_used_since_stays(store, tmp_path):
    cache = CodeCache(store, tmp_path / "cache", ttl_s=TTL)
    old, recent = bundle(store, tmp_path, "old"), bundle(store, tmp_path, "recent")
    old_dir, recent_dir = cache.path(old), cache.path(recent)
    age(old_dir, TTL + 60)
    age(recent_dir, TTL - 60)

    assert cache.prune() == 1
    assert not old_dir.exists()
    assert (recent_dir / "app.py").read_text().endswith("return 'recent'\n")
    assert sorted(p.name for p in cache.root.iterdir()) == sorted([LOCK_NAME, recent])


def test_a_pruned_bundle_is_fetched_again_when_it_is_next_needed(store, tmp_path):
    user, pruner = sharing(store, tmp_path)
    sha = bundle(store, tmp_path, "again")
    path = user.path(sha)
    age(path, TTL + 1)
    assert pruner.prune() == 1 and not path.exists()

    # Within a minute of its last refresh the user trusts its own record; after it, it
    # refreshes, finds the bundle gone and unpacks it again from the store.
    user._known[sha] = (path, time.monotonic() - 61)
    again = user.path(sha)
    assert again == path
    assert (again / "app.py").read_text().endswith("return 'again'\n")


def test_using_a_bundle_refreshes_it_for_every_worker_sharing_the_dir(store, tmp_path):
    first, second = sharing(store, tmp_path)
    sha = bundle(store, tmp_path, "shared")
    path = first.path(sha)
    age(path, TTL + 60)

    second.path(sha)  # another worker runs it now
    assert first.prune() == 0
    assert path.is_dir()
    assert first.prune(now=time.time() + TTL + 1) == 1  # and once nobody has, it goes


def test_half_unpacked_leftovers_go_after_an_hour_and_fresh_ones_stay(store, tmp_path):
    cache = CodeCache(store, tmp_path / "cache", ttl_s=TTL)
    cache.path(bundle(store, tmp_path, "kept"))
    stale, fresh = cache.root / ".0123456789abcdef-crashed", cache.root / ".fedcba9876543210-now"
    for scratch in (stale, fresh):
        (scratch / "pkg").mkdir(parents=True)
        (scratch / "pkg" / "mod.py").write_text("x = 1\n")
    age(stale, SCRATCH_TTL_S + 1)

    assert cache.prune() == 1
    assert not stale.exists() and fresh.is_dir()


def test_the_ttl_never_goes_below_the_longest_timeout(store, tmp_path):
    assert CodeCache(store, tmp_path, ttl_s=1).ttl_s == MIN_TTL_S


def test_an_empty_or_missing_cache_dir_prunes_nothing(store, tmp_path):
    assert CodeCache(store, tmp_path / "never-made", ttl_s=TTL).prune() == 0
    assert not (tmp_path / "never-made").exists()


def test_the_worker_refuses_a_cache_ttl_below_the_minimum():
    result = CliRunner().invoke(cli, ["worker", "--cache-ttl", "0.1"])
    assert result.exit_code == 2
    assert "--cache-ttl" in result.output and "0.25" in result.output


def test_a_starting_worker_prunes_its_cache_and_still_runs_what_it_needs(fleet) -> None:
    # Given a cache dir holding a bundle nobody used for two days and the function's own
    # bundle, also untouched for two days
    spec = fleet.function("cached", handler="app.echo")
    stale = fleet.cache_dir / ("ab" * 32)
    (stale / "lib").mkdir(parents=True)
    own = CodeCache(CodeStore(fleet.redis, fleet.prefix), fleet.cache_dir).path(spec.code_sha256)
    for path in (stale, own):
        age(path, 48 * 3600)
    # When a worker starts (default TTL 24 h) and the function is invoked
    fleet.worker(slots=1)
    fleet.wait_for(lambda: not stale.exists(), what="the stale bundle to be pruned")
    # Then the function still runs: its bundle is unpacked again from Redis
    assert fleet.client.invoke("cached", {"n": 1}).payload["event"] == {"n": 1}
    assert (own / "app.py").is_file()
    assert time.time() - own.stat().st_mtime < 60


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as a second user")
def test_a_worker_of_another_user_uses_a_bundle_it_cannot_refresh(store, unique, tmp_path):
    # Given a bundle and the lock file unpacked by root in a world-traversable cache dir
    root = Path("/var/tmp/warren-test") / f"codecache-{unique}"
    try:
        sha = bundle(store, tmp_path, "shared")
        path = CodeCache(store, root, ttl_s=TTL).path(sha)
        # When a worker running as nobody needs it (it can neither write the lock file nor
        # touch the bundle's mtime)
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child reports through its exit status
            status = 3
            try:
                os.setgid(65534)
                os.setuid(65534)
                status = 0 if CodeCache(store, root, ttl_s=TTL).path(sha) == path else 2
            finally:
                os._exit(status)
        # Then it gets the bundle as it is
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    finally:
        shutil.rmtree(root, ignore_errors=True)
