"""A real poller process whose mappings invoke support/handlers/mapping/recorder.py in-process.

usage: python poller_main.py REDIS_URL AMQP_URL PREFIX LEASE_S   (SIGTERM stops it)
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent / "handlers" / "mapping"))

import recorder  # noqa: E402

from router.batching.invoker import PythonInvoker  # noqa: E402
from warren.cli.compose import build_poller  # noqa: E402
from warren.settings import Settings  # noqa: E402


def main() -> None:
    redis_url, amqp_url, prefix, lease_s = sys.argv[1:5]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    settings = Settings.from_environ({"WARREN_PREFIX": prefix}, amqp_url=amqp_url,
                                     redis_url=redis_url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    poller = build_poller(settings, lease_s=float(lease_s),
                          invoker_factory=lambda: PythonInvoker(recorder.handler))
    print(poller.id, flush=True)
    poller.run(stop)


if __name__ == "__main__":
    main()
