"""The code store: bundles in Redis by sha256, unpacked once per worker cache, verified."""

from __future__ import annotations

import hashlib
import io
import stat
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from warren.errors import CodeBundleError, NotFound, StoreUnavailable
from warren.store.codes import CodeStore


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_url)
    yield conn
    conn.close()


@pytest.fixture
def store(client: redis.Redis, unique: str) -> Iterator[CodeStore]:
    prefix = f"test-{unique}"
    yield CodeStore(client, prefix=prefix)
    keys = list(client.scan_iter(f"{prefix}:*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def code_dir(code: Path) -> Path:
    return code


def test_put_returns_the_sha256_and_size_of_the_stored_zip(store: CodeStore, code_dir: Path):
    sha256, size = store.put(code_dir)
    data = store.get(sha256)
    assert hashlib.sha256(data).hexdigest() == sha256
    assert len(data) == size
    assert zipfile.ZipFile(io.BytesIO(data)).read("app.py").startswith(b"def handler")


def test_the_same_code_is_stored_once(store: CodeStore, client: redis.Redis, code_dir: Path):
    first = store.put(code_dir)
    zipped = code_dir.parent / "code.zip"
    zipped.write_bytes(store.get(first[0]))
    assert store.put(code_dir) == first
    assert store.put(zipped) == first
    assert len(list(client.scan_iter(store.key("*")))) == 1


def test_get_of_an_unknown_bundle_is_not_found(store: CodeStore):
    with pytest.raises(NotFound):
        store.get("0" * 64)


def test_a_malformed_sha_is_refused_before_touching_disk_or_redis(
    store: CodeStore, tmp_path: Path
):
    with pytest.raises(CodeBundleError, match="sha256"):
        store.materialize("../../etc", tmp_path)


def test_put_refuses_an_unsafe_zip(store: CodeStore, tmp_path: Path, client: redis.Redis):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("../evil.py", b"x")
    path = tmp_path / "evil.zip"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(CodeBundleError, match="zip slip"):
        store.put(path)
    assert list(client.scan_iter(store.key("*"))) == []


def test_materialize_unpacks_world_readable_into_cache_root_sha(
    store: CodeStore, code_dir: Path, tmp_path: Path
):
    sha256, _ = store.put(code_dir)
    cache = tmp_path / "cache"
    target = store.materialize(sha256, cache)
    assert target == cache / sha256
    assert (target / "app.py").read_text().startswith("def handler")
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert stat.S_IMODE(cache.stat().st_mode) == 0o755
    assert stat.S_IMODE((target / "app.py").stat().st_mode) == 0o644
    assert [p.name for p in cache.iterdir()] == [sha256]  # no scratch directory left


def test_a_second_materialize_is_a_cache_hit(
    store: CodeStore, client: redis.Redis, code_dir: Path, tmp_path: Path
):
    sha256, _ = store.put(code_dir)
    first = store.materialize(sha256, tmp_path)
    client.delete(store.key(sha256))  # a hit must not even need the store
    assert store.materialize(sha256, tmp_path) == first


def test_a_corrupt_bundle_is_refused_and_leaves_nothing_behind(
    store: CodeStore, client: redis.Redis, code_dir: Path, tmp_path: Path
):
    sha256, _ = store.put(code_dir)
    client.set(store.key(sha256), b"PK tampered with")
    cache = tmp_path / "cache"
    with pytest.raises(CodeBundleError, match="corrupt"):
        store.materialize(sha256, cache)
    assert list(cache.iterdir()) == []


def test_materialize_of_a_missing_bundle_is_not_found(store: CodeStore, tmp_path: Path):
    with pytest.raises(NotFound):
        store.materialize("a" * 64, tmp_path)


def test_concurrent_materialize_calls_agree(store: CodeStore, code_dir: Path, tmp_path: Path):
    sha256, _ = store.put(code_dir)
    results: list[Path] = []
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            results.append(store.materialize(sha256, cache))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    cache = tmp_path / "cache"
    threads = [threading.Thread(target=fetch) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert set(results) == {cache / sha256}
    assert [p.name for p in cache.iterdir()] == [sha256]


def test_an_unreachable_redis_is_store_unavailable(tmp_path: Path, code_dir: Path):
    dead = redis.Redis("127.0.0.1", 1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    store = CodeStore(dead, prefix="unused")
    with pytest.raises(StoreUnavailable, match="cannot reach Redis at redis://127.0.0.1:1/0"):
        store.put(code_dir)
    with pytest.raises(StoreUnavailable):
        store.materialize("b" * 64, tmp_path)


def _materialize_in_child(redis_url: str, prefix: str, sha256: str, cache: str) -> str:
    conn = redis.Redis.from_url(redis_url)
    try:
        return str(CodeStore(conn, prefix).materialize(sha256, Path(cache)))
    finally:
        conn.close()


def test_worker_processes_materializing_at_once_share_one_directory(
    redis_url: str, store: CodeStore, code_dir: Path, tmp_path: Path, unique: str
):
    import multiprocessing

    sha256, _ = store.put(code_dir)
    cache = tmp_path / "cache"
    context = multiprocessing.get_context("spawn")
    with context.Pool(4) as pool:
        args = [(redis_url, f"test-{unique}", sha256, str(cache))] * 8
        paths = pool.starmap(_materialize_in_child, args)
    assert set(paths) == {str(cache / sha256)}
    assert [p.name for p in cache.iterdir()] == [sha256]
    assert (cache / sha256 / "app.py").is_file()
