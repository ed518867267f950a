"""Wait until a probe URL answers 200: `python -m warren.observe.wait URL [SECONDS]`.

The systemd units run it as ExecStartPost, so a unit is "started" only once its process is
ready (/readyz), and dependants ordered after it start against a working service.
"""

from __future__ import annotations

import sys
import time
import urllib.error
import urllib.request


def wait(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                if reply.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.5)


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: python -m warren.observe.wait URL [SECONDS]", file=sys.stderr)
        return 2
    timeout_s = float(argv[1]) if len(argv) == 2 else 60.0
    if wait(argv[0], timeout_s):
        return 0
    print(f"{argv[0]} not ready after {timeout_s:.0f} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
