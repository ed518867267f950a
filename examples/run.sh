#!/usr/bin/env bash
# The quick start's end-to-end example: a real handler run the ways a user runs it — on its own in
# the sandbox, then through a fleet (`warren up`) sync and async, through its gateway with the stock
# aws CLI, then a bucket and a stream feeding
# handlers through event source mappings (examples/pipeline.sh). Everything runs under its own
# WARREN_PREFIX and is removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WARREN=${WARREN:-warren}
export WARREN_PREFIX=${WARREN_PREFIX:-quickstart-$$}
export WARREN_GATEWAY_PORT=${WARREN_GATEWAY_PORT:-9600}
up_pid=""
key_id=""
log="${TMPDIR:-/tmp}/warren-quickstart-$$.log"

cleanup() {
  if [ -n "$up_pid" ]; then kill -TERM "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  $WARREN function delete hello >/dev/null 2>&1 || true
  if [ -n "$key_id" ]; then $WARREN key delete "$key_id" >/dev/null 2>&1 || true; fi
  rm -f "$log" "${TMPDIR:-/tmp}/warren-quickstart-$$.json"
}
trap cleanup EXIT

echo "== 1. warren local invoke: examples/hello in the sandbox, no fleet needed"
$WARREN local invoke examples/hello --handler app.handler --payload '{"name": "Warren"}'

echo
echo "== 2. a fleet on this box: warren up (router + worker + poller + gateway)"
$WARREN function create hello --code examples/hello --handler app.handler --memory 128 --timeout 3 >/dev/null
$WARREN function get hello
$WARREN up --slots 2 2>"$log" &
up_pid=$!

echo
echo "== warren invoke hello (sync, through the worker)"
ok=
for _ in $(seq 1 50); do
  if $WARREN invoke hello --payload '{"name": "fleet"}' 2>/dev/null; then ok=1; break; fi
  sleep 0.2
done
[ -n "$ok" ] || { echo "the fleet did not answer; its log:" >&2; cat "$log" >&2; exit 1; }

echo
echo "== warren invoke hello --async (202: accepted durably, runs in the background)"
$WARREN invoke hello --async --payload '{"name": "async"}' --output json
sleep 1
echo
echo "== the gateway: the same function with the stock aws CLI (a Warren key, --endpoint-url)"
# The key's secret goes straight into the environment, never to the screen.
eval "$($WARREN key create quickstart --output json | $PY -c 'import json, sys
k = json.load(sys.stdin)
print("key_id=" + k["access_key_id"], "AWS_ACCESS_KEY_ID=" + k["access_key_id"],
      "AWS_SECRET_ACCESS_KEY=" + k["secret_access_key"])')"
export AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION=us-east-1
endpoint="http://127.0.0.1:$WARREN_GATEWAY_PORT"
$PY -c "import sys, time, urllib.request
for _ in range(100):
    try:
        urllib.request.urlopen(sys.argv[1] + '/readyz', timeout=1); break
    except OSError:
        time.sleep(0.1)" "$endpoint"
binary=()
if aws --version 2>&1 | grep -q '^aws-cli/2'; then binary=(--cli-binary-format raw-in-base64-out); fi
out="${TMPDIR:-/tmp}/warren-quickstart-$$.json"
echo "\$ aws lambda invoke --endpoint-url $endpoint --function-name hello --payload '{\"name\": \"aws cli\"}' out.json"
aws lambda invoke --endpoint-url "$endpoint" --function-name hello "${binary[@]}" \
  --payload '{"name": "aws cli"}' "$out"
cat "$out"; echo

echo
echo "== warren logs hello (START ... REPORT blocks, as Lambda writes them)"
$WARREN logs hello --since 10m | tail -12
echo
echo "== warren status"
$WARREN status

kill -TERM "$up_pid" && wait "$up_pid" || true
up_pid=""

echo
echo "== 3. event source mappings: a bucket and a stream feeding unchanged Lambda handlers"
WARREN="$WARREN" PYTHON="$PY" bash examples/pipeline.sh
