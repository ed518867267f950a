#!/usr/bin/env bash
# The quick start's end-to-end example: runs a real handler from examples/ the way a user would.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== warren local invoke examples/hello (a Lambda handler, run in the sandbox)"
warren local invoke examples/hello --handler app.handler --payload '{"name": "Warren"}'
