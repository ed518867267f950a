"""Print setup.cfg's install_requires pinned to their minimums (`pkg>=1.2` -> `pkg==1.2`)."""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

config = configparser.ConfigParser()
config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
pins = []
for line in config["options"]["install_requires"].strip().splitlines():
    match = re.match(r"\s*([A-Za-z0-9_.\-\[\]]+)\s*>=\s*([0-9][^,;\s]*)", line)
    if not match:
        sys.exit(f"no minimum version in install_requires line {line!r}")
    pins.append(f"{match.group(1)}=={match.group(2)}")
print(" ".join(pins))
