#!/usr/bin/env bash
# CI: install the LOWEST versions setup.cfg declares (install_requires pinned to their floors) in
# a scratch venv and run a smoke test over what each dependency is used for: msgpack and orjson
# (codec), redis and hiredis (registry, raw pipelines, streams, leases), psycopg and paho-mqtt
# (the table and MQTT sources), pika and click (a worker and a router process serving async
# and sync invocations). A floor that is too low fails
# here instead of on a user's machine. Needs the services `make services` starts.
set -euo pipefail
cd "$(dirname "$0")/.."
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
python3 -m venv "$scratch/venv"
py="$scratch/venv/bin/python"
pins="$(python3 .ci/lowest_requirements.py)"
echo "lowest-deps: $pins"
# The floors as constraints: the test extras install around them, never above them.
tr ' ' '\n' <<<"$pins" | sed 's/\[[a-z,]*\]//' >"$scratch/lowest.txt"
# shellcheck disable=SC2086
"$py" -m pip install -q $pins
"$py" -m pip install -q --no-deps -e .
# Only what the smoke tests import besides Warren (the whole test extra pins newer web stacks).
"$py" -m pip install -q -c "$scratch/lowest.txt" "pytest>=7.4" "pytest-timeout>=2.1" \
    "aws-lambda-powertools>=2.30"
"$py" -m pip check
"$py" -m pip list 2>/dev/null | grep -iE '^(pika|msgpack|redis|hiredis|orjson|click|psycopg|paho-mqtt) '

"$py" -m pytest -q -p no:cacheprovider -o addopts="" \
    tests/unit/test_codec.py tests/unit/test_settings.py \
    tests/integration/registry/test_registry.py tests/integration/store/test_rawpipe.py \
    tests/integration/router/test_router_semaphore.py \
    tests/integration/sources/test_source_stream.py tests/system/test_sync_reply.py \
    tests/integration/sources/test_source_table.py tests/integration/sources/test_source_mqtt.py \
    "tests/system/test_fleet.py::test_success_goes_to_on_success_queue_destination" \
    "tests/system/test_fleet.py::test_async_failure_is_retried_twice_then_recorded_once"
