"""Private RabbitMQ nodes and Redis servers a fault test may restart, kill or cut off.

Never the shared services on 5672/6379: each node here has its own name, ports, data and
log directories and Erlang cookie, and is stopped by its PID when the test is done.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
COOKIE = "WARRENFAULTSUITECOOKIE"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int, timeout: float = 0.3) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout):
            return True
    except OSError:
        return False


def rabbit_available() -> bool:
    return (RABBIT_BIN / "rabbitmq-server").exists() and shutil.which("erl") is not None


class RabbitNode:
    """One RabbitMQ node of our own: `start`, `stop_app`/`start_app`, `kill9`, `stop`.

    The node runs as the current user with HOME in its own directory, so its Erlang cookie is
    ours (not /var/lib/rabbitmq's) and rabbitmqctl -n NODE reaches it with the same HOME.
    """

    def __init__(self, base: Path | None = None, name: str | None = None) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="warren-fault-"))
        self.name = name or f"warren-fault-{uuid.uuid4().hex[:8]}@localhost"
        self.port = free_port()
        self.dist_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.base.mkdir(parents=True, exist_ok=True)
        cookie = self.base / ".erlang.cookie"
        if not cookie.exists():
            cookie.write_text(COOKIE)
            cookie.chmod(0o400)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "cluster_partition_handling = pause_minority\n"
        )
        (self.base / "env.conf").write_text("")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "HOME": str(self.base),
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(self.base / "pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, wait: bool = True) -> None:
        log = open(self.base / "server.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [str(RABBIT_BIN / "rabbitmq-server")],
            env=self.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not answers(self.port):
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.server_log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.server_log()}")
            time.sleep(0.2)

    def ctl(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        out = subprocess.run(
            [str(RABBIT_BIN / "rabbitmqctl"), "-n", self.name, *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and out.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)}: {out.stdout}{out.stderr}")
        return out.stdout

    def stop_app(self) -> None:
        self.ctl("stop_app")

    def start_app(self) -> None:
        self.ctl("start_app")
        self.wait_ready()

    def close_all_connections(self) -> None:
        self.ctl("close_all_connections", "fault test")

    def beam_pid(self) -> int | None:
        try:
            return int((self.base / "pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill9(self) -> None:
        """SIGKILL the Erlang VM (no clean shutdown), then reap our launcher."""
        pid = self.beam_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            self.proc.wait(timeout=30)
            self.proc = None
        deadline = time.monotonic() + 30
        while answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.1)
        (self.base / "pid").unlink(missing_ok=True)

    def stop(self) -> None:
        """Stop the node (rabbitmqctl stop, then SIGKILL what is left); keeps its data."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.ctl("stop", check=False, timeout=60)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        self.kill9()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return (self.base / "server.out").read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    # -- inspection -----------------------------------------------------------------------
    def queues(self, *columns: str) -> list[list[str]]:
        out = self.ctl("-q", "list_queues", "name", *columns, check=False)
        return [line.split("\t") for line in out.splitlines() if line.strip()]

    def consumers(self, queue: str) -> int:
        for row in self.queues("consumers"):
            if len(row) == 2 and row[0] == queue:
                return int(row[1])
        return 0


class RedisNode:
    """A redis-server of our own on a free port; `restart` keeps the port (and, with
    appendonly, the data)."""

    def __init__(self, base: Path | None = None) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="warren-fault-redis-"))
        self.base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, extra: list[str] | None = None) -> None:
        log = open(self.base / "redis.out", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.base), "--appendonly", "yes", "--appendfsync", "always",
                "--save", "", "--protected-mode", "no", *(extra or []),
            ],  # fmt: skip
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + 20
        while not answers(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def destroy(self) -> None:
        self.stop(signal.SIGKILL)
        shutil.rmtree(self.base, ignore_errors=True)


class Blackhole:
    """A TCP relay that can go silent: while `dark`, bytes in either direction are held back
    (no RST, no FIN: a peer sees only silence, as with packets dropped on the network) and
    new connections hang; `light` lets everything flow again."""

    def __init__(self, upstream_port: int) -> None:
        import threading

        self.upstream = ("127.0.0.1", upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._flowing = threading.Event()
        self._flowing.set()
        self._closed = False
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, url: str) -> str:
        """`url` with its port replaced by this relay's."""
        from urllib.parse import urlsplit, urlunsplit

        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@127.0.0.1:{self.port}" if auth else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def _accept(self) -> None:
        import threading

        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self._flowing.wait()  # a connection made in the dark hangs, as its SYN would
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            self._sockets += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                self._flowing.wait()
                dst.sendall(chunk)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def dark(self) -> None:
        self._flowing.clear()

    def light(self) -> None:
        self._flowing.set()

    def close(self) -> None:
        self._closed = True
        self._flowing.set()
        for s in self._sockets:
            try:
                s.close()
            except OSError:
                pass
        self.listener.close()


class RabbitCluster:
    """Three RabbitMQ nodes of our own joined into one cluster (same cookie, own ports)."""

    def __init__(self, size: int = 3) -> None:
        self.nodes = [RabbitNode() for _ in range(size)]

    def start(self) -> None:
        for node in self.nodes:
            node.start(wait=False)
        for node in self.nodes:
            node.wait_ready()
        first = self.nodes[0]
        for node in self.nodes[1:]:
            node.stop_app()
            node.ctl("join_cluster", first.name)
            node.start_app()

    @property
    def urls(self) -> str:
        return ",".join(node.url for node in self.nodes)

    def running(self) -> RabbitNode:
        """A node that answers (to ask it about the cluster's queues)."""
        for node in self.nodes:
            if answers(node.port):
                return node
        raise RuntimeError("no node of the cluster is running")

    def leader_of(self, queue: str) -> RabbitNode:
        for row in self.running().queues("leader"):
            if len(row) == 2 and row[0] == queue:
                for node in self.nodes:
                    if node.name == row[1]:
                        return node
        raise RuntimeError(f"no leader found for {queue}")

    def destroy(self) -> None:
        for node in reversed(self.nodes):
            node.destroy()
