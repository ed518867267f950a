#!/usr/bin/env bash
# The quick start's pipeline: objects dropped into a bucket and records appended to a stream
# flow through event source mappings to unchanged Lambda handlers (examples/s3_reader,
# examples/stream_decoder), run by `warren up`; then the mappings' counters and the handlers'
# logs are shown. Everything runs under its own WARREN_PREFIX and is removed at the end.
#
# Needs RabbitMQ and Redis (WARREN_AMQP_URL / WARREN_REDIS_URL, defaults on 127.0.0.1) and,
# for the bucket half, an S3 endpoint at WARREN_S3_URL (default http://127.0.0.1:9310, the one
# `make services` starts); without one the bucket half is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
WARREN=${WARREN:-warren}
export WARREN_PREFIX=${WARREN_PREFIX:-quickstart-$$}
S3_URL=${WARREN_S3_URL:-${WARREN_TEST_S3_URL:-http://127.0.0.1:9310}}
# The poller reads the bucket with the usual AWS credential chain; moto accepts any keys.
export AWS_ACCESS_KEY_ID=${AWS_ACCESS_KEY_ID:-quickstart} AWS_SECRET_ACCESS_KEY=${AWS_SECRET_ACCESS_KEY:-quickstart}
export AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-us-east-1}
STREAM="$WARREN_PREFIX-orders"
BUCKET="$WARREN_PREFIX-inbox"
up_pid=""

cleanup() {
  if [ -n "$up_pid" ]; then kill -TERM "$up_pid" 2>/dev/null || true; wait "$up_pid" 2>/dev/null || true; fi
  for id in $($WARREN mapping list -o json 2>/dev/null | "$PY" -c 'import json,sys; [print(m["uuid"]) for m in json.load(sys.stdin)]'); do
    $WARREN mapping delete "$id" >/dev/null 2>&1 || true
  done
  $WARREN function delete orders >/dev/null 2>&1 || true
  $WARREN function delete inbox >/dev/null 2>&1 || true
  "$PY" - "$STREAM" <<'PYEOF' >/dev/null 2>&1 || true
import os, sys, redis
redis.Redis.from_url(os.environ.get("WARREN_REDIS_URL", "redis://127.0.0.1:6379/0")).delete(sys.argv[1])
PYEOF
}
trap cleanup EXIT

s3_up() { "$PY" -c "import socket,sys,urllib.parse as u; p=u.urlsplit(sys.argv[1]); socket.create_connection((p.hostname, p.port or 80), 1)" "$S3_URL" 2>/dev/null; }

echo "== functions: two unchanged Lambda handlers"
$WARREN function create orders --code examples/stream_decoder --handler app.handler >/dev/null
echo "orders  <- examples/stream_decoder (decodes kinesis.data, reports bad records)"
if s3_up; then
  $WARREN function create inbox --code examples/s3_reader --handler app.handler --memory 512 \
    --env "S3_ENDPOINT_URL=$S3_URL" --env "S3_ACCESS_KEY_ID=$AWS_ACCESS_KEY_ID" \
    --env "S3_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY" >/dev/null
  echo "inbox   <- examples/s3_reader (reads each new object)"
fi

echo "== mappings: a Redis stream and a bucket feed them"
$WARREN mapping create --function orders --source "redis+stream:///$STREAM" --batch-size 10 \
  --report-item-failures --max-retries 1 --on-failure "redis+stream:///$WARREN_PREFIX-failed" \
  -o json | "$PY" -c 'import json,sys; m=json.load(sys.stdin); print(m["uuid"], m["source"])'
if s3_up; then
  "$PY" - "$S3_URL" "$BUCKET" <<'PYEOF'
import sys, boto3
boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1").create_bucket(Bucket=sys.argv[2])
PYEOF
  $WARREN mapping create --function inbox --source "s3://$BUCKET/incoming/?endpoint=$S3_URL" \
    --start-position trim-horizon -o json \
    | "$PY" -c 'import json,sys; m=json.load(sys.stdin); print(m["uuid"], m["source"])'
fi

echo "== warren up: router, worker and poller"
$WARREN up --slots 2 2>"${TMPDIR:-/tmp}/warren-pipeline-$$.log" &
up_pid=$!

echo "== producing: 20 orders (one of them bad) and 2 objects"
"$PY" - "$STREAM" <<'PYEOF'
import json, os, sys, redis
r = redis.Redis.from_url(os.environ.get("WARREN_REDIS_URL", "redis://127.0.0.1:6379/0"))
for n in range(20):
    order = {"order": n, "qty": n % 3 + 1, "price": 2.5} if n != 13 else {"order": n}
    r.xadd(sys.argv[1], {"data": json.dumps(order), "partitionKey": f"customer-{n % 4}"})
PYEOF
if s3_up; then
  "$PY" - "$S3_URL" "$BUCKET" <<'PYEOF'
import sys, boto3
s3 = boto3.client("s3", endpoint_url=sys.argv[1], region_name="us-east-1")
s3.put_object(Bucket=sys.argv[2], Key="incoming/hello world.txt", Body=b"hello from a bucket")
s3.put_object(Bucket=sys.argv[2], Key="incoming/notes+ideas.txt", Body=b"one two three four")
PYEOF
fi

expected=20
s3_up && expected=22
echo "== waiting for the mappings to deliver"
for _ in $(seq 1 120); do
  done_count=$($WARREN mapping list -o json | "$PY" -c 'import json,sys; print(sum(m["stats"]["succeeded"] + m["stats"]["failed"] for m in json.load(sys.stdin)))')
  [ "$done_count" -ge "$expected" ] && break
  sleep 0.5
done
$WARREN mapping list
if $WARREN logs --help >/dev/null 2>&1; then
  echo "== what the handlers printed"
  $WARREN logs orders --since 10m 2>/dev/null | grep -v -E '(START|END|REPORT) RequestId' | head -25 || true
  s3_up && { $WARREN logs inbox --since 10m 2>/dev/null | grep 's3://' || true; }
fi
echo "== the bad order, given up after its retry, is on the on-failure destination:"
"$PY" - "$WARREN_PREFIX-failed" <<'PYEOF'
import json, os, sys, redis
r = redis.Redis.from_url(os.environ.get("WARREN_REDIS_URL", "redis://127.0.0.1:6379/0"))
for _, fields in r.xrange(sys.argv[1]):
    rec = json.loads(fields[b"record"])
    print(rec["requestContext"]["condition"], rec["recordIds"])
r.delete(sys.argv[1])
PYEOF
