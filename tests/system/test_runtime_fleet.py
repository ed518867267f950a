"""Node and `provided` functions through a real fleet: router, worker, RabbitMQ and Redis."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.fleet import CODE, Fleet
from support.runtimes import SHELL_ECHO, code_dir, need_node

pytestmark = pytest.mark.slow

NODE_CODE = """
let inits = 0;
inits += 1;
exports.handler = async (event, context) => {
  console.log("node saw", JSON.stringify(event));
  return { event, inits, version: context.functionVersion, arn: context.invokedFunctionArn };
};
"""


def test_node_and_provided_functions_run_on_a_worker_fleet_with_versions_and_aliases(
    fleet: Fleet,
) -> None:
    need_node()
    fleet.worker(slots=2)
    fleet.router()
    with code_dir({"index.js": NODE_CODE}, executable=()) as node_dir, code_dir(
        {"bootstrap": SHELL_ECHO}
    ) as shell_dir:
        fleet.client.create_function(
            "nodefn", code=Path(node_dir), handler="index.handler", runtime="nodejs20.x"
        )
        done = f"{fleet.prefix}-done"
        fleet.client.create_function(
            "shellfn", code=Path(shell_dir), handler="whatever", runtime="provided.al2023",
            on_success=f"redis+stream:///{done}",
        )
        # When each is invoked synchronously, twice
        first = fleet.client.invoke("nodefn", {"n": 1}, log_tail=True)
        second = fleet.client.invoke("nodefn", {"n": 2})
        shell = fleet.client.invoke("shellfn", {"s": 1})
        # Then the results come back, from one warm Node process
        assert first.status_code == 200 and first.function_error is None
        assert first.payload["event"] == {"n": 1} and first.payload["version"] == "$LATEST"
        assert "node saw" in first.logs and "REPORT RequestId" in first.logs
        assert second.payload["inits"] == 1
        assert shell.payload["echo"] == {"s": 1}
        # And a published version behind an alias runs as that version
        fleet.client.publish_version("nodefn")
        fleet.client.create_alias("nodefn", "live", "1")
        via_alias = fleet.client.invoke("nodefn", {"n": 3}, qualifier="live")
        assert via_alias.executed_version == "1" and via_alias.payload["version"] == "1"
        # And asynchronous invocations reach it too
        fleet.client.invoke("shellfn", {"a": 1}, invocation_type="Event")
        fleet.wait_for(lambda: fleet.redis.xlen(done) >= 1, timeout=60, what="the async success")
        assert fleet.stream_records(done)[0]["responsePayload"]["echo"] == {"a": 1}


def test_a_runtime_the_worker_cannot_run_fails_with_the_list_it_can(fleet: Fleet) -> None:
    fleet.worker(slots=1)
    fleet.router()
    made = fleet.cli("function", "create", "oldpy", "--code", str(CODE), "--handler", "app.echo",
                     "--runtime", "python3.9")
    assert made.returncode == 0, made.stderr
    assert b"warning: no live worker of pool 'default' can run python3.9" in made.stderr
    out = fleet.client.invoke("oldpy", {"x": 1})
    assert out.status_code == 500
    assert out.payload["errorType"] == "ServiceException"
    assert "python3.9 cannot run on this machine" in out.payload["errorMessage"]
    assert "provided.al2023" in out.payload["errorMessage"]


STREAM_CODE = """
exports.handler = async (event) => {
  for (const r of event.Records) {
    const data = JSON.parse(Buffer.from(r.kinesis.data, "base64").toString());
    console.log("record", data.n);
  }
  return { batchItemFailures: [] };
};
"""


def test_a_node_function_consumes_a_stream_mapping_through_the_fleet(fleet: Fleet) -> None:
    need_node()
    import orjson

    from warren.store.mappings import MappingStore

    fleet.worker(slots=2)
    fleet.router()
    fleet.spawn("poller")
    stream = f"{fleet.prefix}-src"
    with code_dir({"index.js": STREAM_CODE}, executable=()) as path:
        fleet.client.create_function(
            "noderecs", code=Path(path), handler="index.handler", runtime="nodejs20.x"
        )
        for n in range(20):
            fleet.redis.xadd(stream, {"data": orjson.dumps({"n": n})})
        store = MappingStore(fleet.redis, fleet.prefix, functions=fleet.client.registry)
        spec = store.create(function="noderecs", source=f"redis+stream:///{stream}",
                            batch_size=5)
        fleet.wait_for(lambda: store.stats(spec.uuid)["succeeded"] == 20, timeout=90,
                       what="20 records handled by the Node function")
    text = "".join(entry.text for entry in fleet.client_logs("noderecs"))
    assert {int(n) for n in re.findall(r"\tINFO\trecord (\d+)", text)} == set(range(20))
