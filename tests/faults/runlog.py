"""Receives the fault handlers' run lines over TCP and appends them to their runs files.

Handlers run behind the sandbox walls (a read-only host tree, a private /tmp), so they cannot
write a file the test reads; loopback connections to ports other than the fleet's are open.
"""

from __future__ import annotations

import socketserver
import threading
from pathlib import Path


class RunLog:
    """One TCP listener on 127.0.0.1; each connection carries `<runs file name>\\n<lines>`."""

    def __init__(self, directory: Path) -> None:
        lock = threading.Lock()

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                name = self.rfile.readline().decode().strip()
                text = self.rfile.read()
                if name and "/" not in name and text:
                    with lock, open(directory / name, "ab") as runs:
                        runs.write(text)
                self.wfile.write(b"ok")  # the handler waits for it: the line is written

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.address = f"127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
