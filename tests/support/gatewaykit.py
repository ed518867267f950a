"""A gateway in front of a test fleet, and stock clients signed with a fresh Warren key."""

from __future__ import annotations

import gc
import http.client
import io
import socket
import time
import uuid
import warnings
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from support.fleet import Fleet
from warren.store.accesskeys import AccessKeys

HANDLERS = Path(__file__).parent / "handlers" / "gateway"


def fetch(
    url: str, method: str = "GET", body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, Any, bytes]:
    """One request on a connection of its own, closed before returning (urllib's error
    responses leave their sockets to the garbage collector)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=30)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


def sweep_dropped_connections() -> None:
    """Collect the connections urllib3 dropped without closing (a request refused before its
    body was read, one cut by an outage) now, not in whichever test runs next."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def zip_of(directory: Path) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for path in sorted(directory.rglob("*.py")):
            archive.write(path, path.relative_to(directory).as_posix())
    return buf.getvalue()


class GatewayKit:
    """One fleet (router, worker) and a gateway process; clients signed with a fresh key."""

    def __init__(
        self,
        fleet: Fleet,
        amqp_url: str | None = None,
        *argv: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.fleet = fleet
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        env = {**({"WARREN_AMQP_URL": amqp_url} if amqp_url else {}), **(env or {})}
        self.proc = fleet.spawn("gateway", "--port", str(self.port), *argv, env=env)
        self.key_id, self.secret = "", ""
        self.clients: list[Any] = []  # closed by close(): a collected one warns of its socket
        fleet.wait_for(self.healthy, what="the gateway's /healthz")

    def healthy(self) -> bool:
        try:
            return fetch(self.endpoint + "/healthz")[0] == 200
        except OSError:
            return False

    def new_key(self) -> tuple[str, str]:
        key, secret = AccessKeys(self.fleet.redis, self.fleet.prefix).create("test")
        return key.access_key_id, secret

    def client(self, key: tuple[str, str] | None = None, **config: Any) -> Any:
        import boto3
        from botocore.config import Config

        if key is None:
            if not self.key_id:
                self.key_id, self.secret = self.new_key()
            key = (self.key_id, self.secret)
        client = boto3.client(
            "lambda",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key[0],
            aws_secret_access_key=key[1],
            config=Config(retries={"max_attempts": 1, "mode": "standard"}, read_timeout=120,
                          **config),
        )
        self.clients.append(client)
        return client

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.clients.clear()

    def create(self, name: str, handler: str = "app.echo", **options: Any) -> dict[str, Any]:
        """A function from tests/gateway/handlers, created through the API."""
        return dict(self.client().create_function(
            FunctionName=name,
            Runtime="python3.11",
            Role="arn:aws:iam::000000000000:role/any",
            Handler=handler,
            Code={"ZipFile": zip_of(HANDLERS)},
            **options,
        ))


def unique_name(stem: str) -> str:
    return f"{stem}-{uuid.uuid4().hex[:8]}"


def wait_until(predicate: Any, timeout: float = 30.0, what: str = "a condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
