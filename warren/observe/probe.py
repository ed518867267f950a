"""A long-running process's probe server: /metrics, /healthz and /readyz on `--metrics-port`.

The standard library's ThreadingHTTPServer in a daemon thread: a scrape every few seconds
needs nothing faster, and it keeps the probes off the process's own threads (a worker whose
slots are all busy still answers). /healthz says the process is alive (its probe thread runs);
/readyz says it can do its work (the `ready` check: its broker and Redis answer, and for a
worker, a slot consumes its queue), and names what is missing when it cannot.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from warren.observe.metrics import Registry

log = logging.getLogger("warren.probe")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Ready = Callable[[], list[str]]  # what is missing; empty when ready


class ProbeServer:
    """Serves a registry and two probes; `start` binds (raising OSError if the port is taken)."""

    def __init__(
        self, port: int, registry: Registry, ready: Ready, host: str = "0.0.0.0"
    ) -> None:
        self.registry = registry
        self.ready = ready
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="probe", daemon=True
        )

    def start(self) -> ProbeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        probe = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, probe.registry.render(), CONTENT_TYPE)
                elif path == "/healthz":
                    self._send(200, "ok\n")
                elif path == "/readyz":
                    try:
                        missing = probe.ready()
                    except Exception as exc:  # a failing check is "not ready", never a 500
                        missing = [f"readiness check failed: {exc}"]
                    if missing:
                        self._send(503, "not ready: " + "; ".join(missing) + "\n")
                    else:
                        self._send(200, "ready\n")
                else:
                    self._send(404, "not found: try /metrics, /healthz or /readyz\n")

            def _send(self, status: int, body: str, ctype: str = "text/plain") -> None:
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # a scrape every few seconds is not news

        return Handler


def reachable(host: str, port: int, timeout_s: float = 1.0) -> bool:
    """Whether a TCP connection to host:port opens (a cheap dependency check for /readyz)."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def serve(port: int, registry: Registry, ready: Ready) -> ProbeServer | None:
    """Start a probe server on `port`, or nothing when it is 0 (off)."""
    if not port:
        return None
    server = ProbeServer(port, registry, ready).start()
    log.info("metrics and probes on :%d (/metrics, /healthz, /readyz)", server.port)
    return server
