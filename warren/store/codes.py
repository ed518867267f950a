"""Content-addressed code bundles in Redis, and their verified local unpacking for workers."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path

import redis

from warren import bundle
from warren.errors import CodeBundleError, NotFound
from warren.keys import Keys
from warren.store.coderefs import GRACE_S
from warren.store.redis import redis_errors

_SHA256 = re.compile(r"[0-9a-f]{64}")


class CodeStore:
    """Zip bytes under `<prefix>:code:<sha256 of the zip>`, stored once and never changed."""

    def __init__(self, redis: redis.Redis[bytes], prefix: str = "warren") -> None:
        self._redis = redis
        self._prefix = prefix

    def key(self, sha256: str) -> str:
        return Keys(self._prefix).code(sha256)

    def put(self, path: Path) -> tuple[str, int]:
        """Store a directory (zipped deterministically) or a zip file; return (sha256, size)."""
        return self.put_bytes(bundle.read(Path(path)))

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        bundle.verify(data)
        sha256 = hashlib.sha256(data).hexdigest()
        with redis_errors("code bundles", self._redis):
            # Until a registry write references it (and persists it): see warren/store/coderefs.py.
            self._redis.set(self.key(sha256), data, nx=True, ex=GRACE_S)
        return sha256, len(data)

    def exists(self, sha256: str) -> bool:
        with redis_errors("code bundles", self._redis):
            return bool(self._redis.exists(self.key(_checked(sha256))))

    def get(self, sha256: str) -> bytes:
        with redis_errors("code bundles", self._redis):
            data = self._redis.get(self.key(_checked(sha256)))
        if data is None:
            raise NotFound(f"code bundle {sha256} is not in the store")
        assert isinstance(data, bytes)
        return data

    def materialize(self, sha256: str, cache_root: Path) -> Path:
        """Unpack a bundle into `cache_root/<sha256>/` once; later calls are a cheap cache hit.

        The directory appears atomically (unpacked into a temporary sibling, then renamed), so
        its existence means it is complete and its bytes matched the sha256. Files are
        world-readable because sandboxes run as other users.
        """
        final = Path(cache_root) / _checked(sha256)
        if final.is_dir():
            return final
        _ensure_root(Path(cache_root))
        data = self.get(sha256)
        if hashlib.sha256(data).hexdigest() != sha256:
            raise CodeBundleError(f"code bundle {sha256} is corrupt: its bytes hash differently")
        scratch = Path(tempfile.mkdtemp(prefix=f".{sha256[:16]}-", dir=cache_root))
        try:
            bundle.unpack(data, scratch)
            os.chmod(scratch, 0o755)
            try:
                os.rename(scratch, final)
            except OSError:
                if not final.is_dir():  # not a lost race with another process: a real failure
                    raise
        except OSError as exc:
            raise CodeBundleError(f"cannot unpack code bundle {sha256}: {exc}") from None
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
        return final


def _checked(sha256: str) -> str:
    # The sha256 becomes a path component and a key: only ever 64 lowercase hex digits.
    if not isinstance(sha256, str) or not _SHA256.fullmatch(sha256):
        raise CodeBundleError(f"{sha256!r} is not a sha256 hex digest")
    return sha256


def _ensure_root(root: Path) -> None:
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o755)
