"""Helpers for the external-runtime tests: code dirs with a bootstrap, and the Node check."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from sandbox.runtimes import node_binary

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
PYTHON = sys.executable  # a bootstrap written in Python runs on the tests' own interpreter


def _has_awslambdaric() -> bool:
    try:
        import awslambdaric  # noqa: F401
    except ImportError:
        return False
    return True


def need_node() -> None:
    """Skip where the machine has no Node.js; under CI=true its absence is a failure."""
    if node_binary() is None:
        if IN_CI:
            pytest.fail("Node.js is missing: deploy/ensure-services.sh installs Debian's nodejs")
        pytest.skip("no `node` on this machine (install Debian's nodejs to run these)")


requires_awslambdaric = pytest.mark.skipif(
    not _has_awslambdaric(), reason="awslambdaric is not installed (pip install -e '.[test]')"
)


@contextmanager
def code_dir(files: dict[str, str], executable: tuple[str, ...] = ("bootstrap",)) -> Iterator[str]:
    """A world-readable code directory holding `files` (the `executable` ones 0755)."""
    path = tempfile.mkdtemp(prefix="warren-test-rt-")
    os.chmod(path, 0o755)
    try:
        for name, text in files.items():
            full = os.path.join(path, name)
            os.makedirs(os.path.dirname(full), mode=0o755, exist_ok=True)
            with open(full, "w") as f:
                f.write(text)
            os.chmod(full, 0o755 if name in executable else 0o644)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# A bootstrap in Python (standard library only), for the Runtime API's corner cases.
PY_CLIENT = f"""#!{PYTHON}
import http.client, json, os, sys
HOST, PORT = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
conn = http.client.HTTPConnection(HOST, int(PORT))

def call(method, path, body=None, headers=None):
    conn.request(method, "/2018-06-01/runtime/" + path, body=body, headers=headers or {{}})
    reply = conn.getresponse()
    return reply.status, dict(reply.getheaders()), reply.read()
"""

SHELL_ECHO = """#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
n=0
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -D "$HEADERS" "$API/invocation/next")
  RID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  rm -f "$HEADERS"
  n=$((n + 1))
  echo "shell got $EVENT"
  curl -sS -o /dev/null -X POST "$API/invocation/$RID/response" \\
    -d "{\\"echo\\": $EVENT, \\"n\\": $n, \\"rid\\": \\"$RID\\"}"
done
"""
