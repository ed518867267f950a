"""Helpers for the layer tests: layer trees on disk, a PyPI package installed into one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PACKAGE = "tabulate"  # pure Python, small, and not a dependency of Warren or its tests


def tree(root: Path, files: dict[str, str], executable: tuple[str, ...] = ()) -> Path:
    """Write `files` (relative path -> text) under `root`, world-readable; returns `root`."""
    for name, text in files.items():
        full = root / name
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(text)
        full.chmod(0o755 if name in executable else 0o644)
    return root


def pip_layer(root: Path) -> Path:
    """A layer whose python/ holds PACKAGE as `pip install --target` puts it there."""
    target = root / "python"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-compile", "--target", str(target), PACKAGE],
        capture_output=True, timeout=300, check=False,
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace")[-500:]
        if IN_CI:
            pytest.fail(f"pip could not install {PACKAGE} into a layer: {why}")
        pytest.skip(f"pip cannot reach a package index here: {why}")
    return root


def importable_here(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True
