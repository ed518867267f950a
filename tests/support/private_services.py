"""Private PostgreSQL and Mosquitto servers on free ports, so tests may restart them freely."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest


def _pg_bin() -> Path:
    """Debian's newest PostgreSQL server binaries (or WARREN_TEST_PG_BIN)."""
    if os.environ.get("WARREN_TEST_PG_BIN"):
        return Path(os.environ["WARREN_TEST_PG_BIN"])
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    return found[-1].parent if found else Path("/usr/lib/postgresql/15/bin")


PG_BIN = _pg_bin()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _missing(what: str) -> None:
    if IN_CI:
        pytest.fail(f"{what} is not installed")
    pytest.skip(f"{what} is not installed")


class PgServer:
    """One PostgreSQL cluster in a temporary directory (run as `postgres` when we are root)."""

    def __init__(self, wal_level: str = "logical") -> None:
        if not (PG_BIN / "initdb").exists():
            _missing("PostgreSQL (initdb)")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="warren-pg-")
        self.data = os.path.join(self.dir, "data")
        self._as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: the cluster belongs to postgres
            shutil.chown(self.dir, "postgres")
            self._as = ["runuser", "-u", "postgres", "--"]
        self._run("initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        self.options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                        f"-c unix_socket_directories='' -c wal_level={wal_level} -c fsync=off "
                        "-c max_replication_slots=20 -c max_wal_senders=20")
        self.start()

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run([*self._as, str(PG_BIN / tool), *args], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def start(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-o", self.options, "-l",
                  os.path.join(self.dir, "log"), "-w", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


class MosquittoServer:
    """A mosquitto broker with persistence in a temporary directory."""

    def __init__(self) -> None:
        if shutil.which("mosquitto") is None:
            _missing("mosquitto")
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="warren-mqtt-")
        if os.geteuid() == 0:
            shutil.chown(self.dir, "mosquitto" if _user_exists("mosquitto") else "root")
        self.config = os.path.join(self.dir, "mosquitto.conf")
        Path(self.config).write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
            f"persistence_location {self.dir}/\nmax_queued_messages 0\n"
            "max_inflight_messages 0\nautosave_interval 1\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", self.config],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not _answers(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its persistence file first
            self.proc.wait(timeout=10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """A private PostgreSQL with wal_level=logical, shared by a session's table tests."""
    server = PgServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mqtt_server() -> Iterator[MosquittoServer]:
    server = MosquittoServer()
    yield server
    server.close()
