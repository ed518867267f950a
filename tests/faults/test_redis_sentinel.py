"""Warren's Redis through Sentinel: found by asking the sentinels, found again after a fail-over."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faults.nodes import RedisNode, answers, free_port
from warren.settings import RedisSettings
from warren.store.redis import connect


class Sentinel:
    def __init__(self, master_port: int) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="warren-fault-sentinel-"))
        self.port = free_port()
        conf = self.base / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.base}\n"
            f"sentinel monitor warren 127.0.0.1 {master_port} 1\n"
            "sentinel down-after-milliseconds warren 1000\n"
            "sentinel failover-timeout warren 5000\n"
        )
        self.proc = subprocess.Popen(
            ["redis-server", str(conf), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while not answers(self.port):
            assert time.monotonic() < deadline, "redis-sentinel did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture
def replicated() -> Iterator[tuple[RedisNode, RedisNode, Sentinel]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is needed")
    master = RedisNode()
    master.start()
    replica = RedisNode()
    replica.start(extra=["--replicaof", "127.0.0.1", str(master.port)])
    sentinel = Sentinel(master.port)
    try:
        yield master, replica, sentinel
    finally:
        sentinel.stop()
        replica.destroy()
        master.destroy()


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_sentinel_url_reaches_the_master_and_follows_a_fail_over(
    replicated: tuple[RedisNode, RedisNode, Sentinel],
) -> None:
    master, replica, sentinel = replicated
    # Given Warren's Redis named by a Sentinel URL
    settings = RedisSettings.from_url(f"redis+sentinel://127.0.0.1:{sentinel.port}/warren/0")
    client = connect(settings)
    client.set("k", "before")
    deadline = time.monotonic() + 30
    while int(client.info("replication").get("connected_slaves", 0)) < 1:
        assert time.monotonic() < deadline, "the replica never connected"
        time.sleep(0.1)
    client.wait(1, 5000)
    # When the master dies and the sentinel promotes the replica
    master.stop()
    promoted = time.monotonic()
    # Then the same client writes again once the fail-over is done, to the new master
    while True:
        try:
            client.set("k", "after")
            break
        except Exception:  # noqa: BLE001 - the fail-over takes a few seconds
            assert time.monotonic() - promoted < 60, "the client never found the new master"
            time.sleep(0.5)
    assert client.get("k") == b"after"
    client.close()
    import redis

    promoted_replica = redis.Redis(port=replica.port)
    assert promoted_replica.info("replication")["role"] == "master"
    assert promoted_replica.get("k") == b"after"
    promoted_replica.close()
