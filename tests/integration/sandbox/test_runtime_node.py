"""`nodejs*` runtimes: Warren's own Node bootstrap, on the machine's `node`."""

from __future__ import annotations

import re
import threading

import pytest
from support.runtimes import code_dir, need_node
from support.sandbox import requires_cgroup, wait_gone

from sandbox import Sandbox
from warren.errors import InvalidParameter


@pytest.fixture(autouse=True)
def _node() -> None:
    need_node()


CJS = """
let inits = 0;
inits += 1;
console.log("module init");
exports.handler = async (event, context) => {
  console.log("got", event);
  console.warn("careful");
  return {
    event, inits,
    awsRequestId: context.awsRequestId, functionName: context.functionName,
    functionVersion: context.functionVersion, invokedFunctionArn: context.invokedFunctionArn,
    memoryLimitInMB: context.memoryLimitInMB, logGroupName: context.logGroupName,
    logStreamName: context.logStreamName, left: context.getRemainingTimeInMillis(),
    waits: context.callbackWaitsForEmptyEventLoop,
  };
};
exports.nested = { deeper: { fn: async () => "deep" } };
exports.thrower = async () => { throw new RangeError("out of range"); };
exports.stringer = async () => { throw "just a string"; };
exports.notfn = 42;
exports.circular = async () => { const a = {}; a.a = a; return a; };
exports.nothing = async () => undefined;
"""


def test_commonjs_handler_gets_lambdas_context_and_module_code_runs_once():
    with code_dir({"index.js": CJS}) as path, Sandbox(
        path, "index.handler", runtime="nodejs20.x", memory_mb=256, timeout_s=5,
        function_name="nodey", function_version="7",
    ) as sb:
        first = sb.invoke({"a": 1})
        second = sb.invoke({"b": 2}, request_id="rid-2")
    res = first.result
    assert res["event"] == {"a": 1} and res["inits"] == 1
    assert res["awsRequestId"] == first.request_id and res["functionName"] == "nodey"
    assert res["functionVersion"] == "7" and res["memoryLimitInMB"] == "256"
    assert res["invokedFunctionArn"].endswith(":function:nodey")
    assert res["logGroupName"] == "/aws/lambda/nodey" and "[7]" in res["logStreamName"]
    assert 0 < res["left"] <= 5000 and res["waits"] is True
    assert second.result["inits"] == 1 and second.result["awsRequestId"] == "rid-2"
    assert first.init_ms is not None and second.init_ms is None
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"
    assert re.search(rf"^{stamp}\tundefined\tINFO\tmodule init$", first.logs, re.M)
    assert re.search(rf"^{stamp}\trid-2\tINFO\tgot {{ b: 2 }}$", second.logs, re.M)
    assert re.search(rf"^{stamp}\trid-2\tWARN\tcareful$", second.logs, re.M)
    assert "module init" not in second.logs
    assert re.search(r"Max Memory Used: [1-9]\d* MB\tInit Duration: [\d.]+ ms", first.logs)


def test_commonjs_cjs_extension_and_nested_exports():
    with code_dir({"lib/mod.cjs": "exports.deep = { fn: async () => 'cjs deep' };"}) as path:
        with Sandbox(path, "lib/mod.deep.fn", runtime="nodejs22.x") as sb:
            assert sb.invoke({}).result == "cjs deep"
    with code_dir({"index.js": CJS}) as path, Sandbox(path, "index.nested.deeper.fn",
                                                      runtime="nodejs20.x") as sb:
        assert sb.invoke({}).result == "deep"


def test_es_module_handlers_mjs_and_type_module():
    mjs = "export const handler = async (event) => ({ esm: 'mjs', event });\n"
    with code_dir({"app.mjs": mjs}) as path, Sandbox(path, "app.handler",
                                                     runtime="nodejs20.x") as sb:
        assert sb.invoke({"x": 1}).result == {"esm": "mjs", "event": {"x": 1}}
    files = {
        "package.json": '{"type": "module"}',
        "src/index.js": (
            "import { helper } from './helper.js';\n"
            "export async function handler(event) { return helper(event); }\n"
        ),
        "src/helper.js": "export const helper = (e) => ({ esm: 'type-module', e });\n",
    }
    with code_dir(files) as path, Sandbox(path, "src/index.handler", runtime="nodejs20.x") as sb:
        assert sb.invoke({"y": 2}).result == {"esm": "type-module", "e": {"y": 2}}


CALLBACKS = """
exports.waits = (event, context, callback) => {
  setTimeout(() => console.log("timer ran"), 30);
  callback(null, { cb: event });
};
exports.nowait = (event, context, callback) => {
  context.callbackWaitsForEmptyEventLoop = false;
  setTimeout(() => console.log("late timer"), 500);
  callback(null, "quick");
};
exports.fails = (event, context, callback) => callback(new Error("cb failed"));
exports.succeed = (event, context) => { context.succeed({ legacy: true }); };
"""


def test_callback_handlers_wait_for_an_empty_event_loop_unless_told_not_to():
    with code_dir({"index.js": CALLBACKS}) as path:
        with Sandbox(path, "index.waits", runtime="nodejs20.x") as sb:
            out = sb.invoke({"n": 1})
            again = sb.invoke({"n": 2})
        assert out.result == {"cb": {"n": 1}} and again.result == {"cb": {"n": 2}}
        # The timer ran before the answer went back: its line precedes END.
        assert out.logs.index("timer ran") < out.logs.index("END RequestId")
        with Sandbox(path, "index.nowait", runtime="nodejs20.x") as sb:
            quick = sb.invoke({})
        assert quick.result == "quick" and "late timer" not in quick.logs
        with Sandbox(path, "index.fails", runtime="nodejs20.x") as sb:
            failed = sb.invoke({})
            assert sb.invoke({}).init_ms is None  # still warm after a handler error
        assert failed.error_type == "Error" and failed.error["errorMessage"] == "cb failed"
        with Sandbox(path, "index.succeed", runtime="nodejs20.x") as sb:
            assert sb.invoke({}).result == {"legacy": True}


def test_errors_come_back_in_lambdas_node_shape():
    with code_dir({"index.js": CJS}) as path:
        with Sandbox(path, "index.thrower", runtime="nodejs20.x") as sb:
            out = sb.invoke({})
        assert out.error_type == "RangeError"
        assert out.error["errorMessage"] == "out of range"
        assert out.error["trace"][0] == "RangeError: out of range"
        assert any("index.js" in line for line in out.error["trace"])
        assert not any("sandbox/node" in line for line in out.error["trace"])
        assert re.search(r"\tERROR\tInvoke Error \t\{\"errorType\":\"RangeError\"", out.logs)
        with Sandbox(path, "index.stringer", runtime="nodejs20.x") as sb:
            assert sb.invoke({}).error == {
                "errorType": "string", "errorMessage": "just a string", "trace": []
            }
        with Sandbox(path, "index.circular", runtime="nodejs20.x") as sb:
            assert sb.invoke({}).error_type == "Runtime.MarshalError"
        with Sandbox(path, "index.nothing", runtime="nodejs20.x") as sb:
            assert sb.invoke({}).result_json == b"null"


@pytest.mark.parametrize(
    ("handler", "files", "etype"),
    [
        ("index.missing", {"index.js": CJS}, "Runtime.HandlerNotFound"),
        ("index.notfn", {"index.js": CJS}, "Runtime.HandlerNotFound"),
        ("nomodule.handler", {"index.js": CJS}, "Runtime.ImportModuleError"),
        ("index", {"index.js": CJS}, "Runtime.MalformedHandlerName"),
        ("bad.handler", {"bad.js": "exports.x = (=> 1;"}, "Runtime.UserCodeSyntaxError"),
        ("init.handler", {"init.js": "throw new TypeError('at init');"}, "TypeError"),
        ("dep.handler", {"dep.js": "require('left-pad-nowhere');"}, "Runtime.ImportModuleError"),
    ],
)
def test_init_failures_are_typed_and_reset_the_sandbox(handler, files, etype):
    with code_dir(files) as path, Sandbox(path, handler, runtime="nodejs20.x") as sb:
        out = sb.invoke({})
        assert not sb.alive
    assert out.error_type == etype and out.init_ms is not None
    assert "Init Error" in out.logs


def test_busy_loop_past_the_timeout_is_killed_and_the_next_invoke_starts_fresh():
    code = "exports.handler = async (e) => { if (e.spin) { for (;;) {} } return 'ok'; };"
    with code_dir({"index.js": code}) as path, Sandbox(path, "index.handler",
                                                       runtime="nodejs20.x", timeout_s=1) as sb:
        assert sb.invoke({}).ok
        pid = sb.pid
        out = sb.invoke({"spin": True})
        assert not sb.alive
        assert wait_gone([pid]) == []
        after = sb.invoke({})
    assert out.status == "timeout" and out.error_type == "Sandbox.Timedout"
    assert "Task timed out after 1.00 seconds" in out.error["errorMessage"]
    assert after.ok and after.init_ms is not None


@requires_cgroup
def test_allocating_past_the_memory_limit_is_out_of_memory():
    code = """
const hold = [];
exports.handler = async (event) => {
  for (let i = 0; i < 100000; i++) hold.push(Buffer.alloc(1 << 20, 1));
  return hold.length;
};
exports.small = async () => 'small';
"""
    with code_dir({"index.js": code}) as path, Sandbox(path, "index.handler",
                                                       runtime="nodejs20.x", memory_mb=128,
                                                       timeout_s=20) as sb:
        out = sb.invoke({})
        assert not sb.alive
    assert out.error_type == "Runtime.OutOfMemory", out.logs
    assert "Max Memory Used: 128 MB" in out.logs


def test_an_uncaught_exception_fails_the_invocation_and_the_process_is_replaced():
    code = """
exports.handler = (event, context, callback) => {
  if (event.crash) setTimeout(() => { throw new Error("async boom"); }, 1);
  else callback(null, "fine");
};
"""
    with code_dir({"index.js": code}) as path, Sandbox(path, "index.handler",
                                                       runtime="nodejs20.x") as sb:
        crashed = sb.invoke({"crash": True})
        after = sb.invoke({})
    assert crashed.error_type == "Error" and crashed.error["errorMessage"] == "async boom"
    assert "Uncaught Exception" in crashed.logs
    assert after.ok and after.result == "fine" and after.init_ms is not None


def test_concurrent_node_sandboxes_of_one_function():
    code = "let n = 0; exports.handler = async (e) => ({ e, n: ++n, pid: process.pid });"
    with code_dir({"index.js": code}) as path:
        sandboxes = [Sandbox(path, "index.handler", runtime="nodejs20.x") for _ in range(3)]
        results: dict[int, list] = {}

        def run(i: int) -> None:
            results[i] = [sandboxes[i].invoke({"i": i}) for _ in range(4)]

        threads = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        try:
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
        finally:
            for sb in sandboxes:
                sb.close()
    pids = set()
    for i in range(3):
        assert [o.result["n"] for o in results[i]] == [1, 2, 3, 4]
        assert all(o.result["e"] == {"i": i} for o in results[i])
        pids |= {o.result["pid"] for o in results[i]}
    assert len(pids) == 3


def test_a_payload_that_is_not_json_is_an_unmarshal_error_and_the_runtime_stays():
    with code_dir({"index.js": CJS}) as path, Sandbox(path, "index.nothing",
                                                      runtime="nodejs20.x") as sb:
        bad = sb.invoke(payload=b"{not json")
        good = sb.invoke({})
    assert bad.error_type == "Runtime.UnmarshalError"
    assert good.ok and good.init_ms is None


def test_a_handler_that_exits_the_process_is_an_exit_error_then_a_fresh_one():
    code = "exports.handler = async (e) => { if (e.exit) process.exit(3); return 'alive'; };"
    with code_dir({"index.js": code}) as path, Sandbox(path, "index.handler",
                                                       runtime="nodejs20.x") as sb:
        gone = sb.invoke({"exit": True})
        after = sb.invoke({})
    assert gone.error_type == "Runtime.ExitError"
    assert gone.error["errorMessage"].endswith("Runtime exited with error: exit status 3")
    assert after.result == "alive" and after.init_ms is not None


def test_without_node_the_runtime_is_refused_with_how_to_get_it(monkeypatch):
    import sandbox.runtimes as runtimes

    monkeypatch.setattr(runtimes, "node_binary", lambda: None)
    with code_dir({"index.js": CJS}) as path, pytest.raises(InvalidParameter) as refused:
        Sandbox(path, "index.handler", runtime="nodejs20.x")
    message = str(refused.value)
    assert "no `node` found" in message and "apt-get install nodejs" in message
    assert "nodejs20.x" not in runtimes.available()


HEAP_HOG = """
const hold = [];
exports.handler = async () => {
  for (;;) hold.push({ a: [1, 2, 3], b: "x".repeat(64), c: hold.length });
};
"""


@pytest.mark.parametrize("cgroups", [True, False], ids=["cgroup", "rlimit"])
def test_exhausting_the_js_heap_is_out_of_memory_with_or_without_a_cgroup(cgroups):
    from sandbox import Isolation

    if cgroups:
        from support.sandbox import cgroup_available

        if not cgroup_available():
            pytest.skip("needs a writable cgroup (v2 with memory+pids, or v1)")
    iso = Isolation(use_cgroups=cgroups)
    with code_dir({"index.js": HEAP_HOG}) as path, Sandbox(
        path, "index.handler", runtime="nodejs20.x", memory_mb=128, timeout_s=60, isolation=iso
    ) as sb:
        out = sb.invoke({})
        assert not sb.alive
    assert out.error_type == "Runtime.OutOfMemory", out.logs[-2000:]
    assert "Max Memory Used: 128 MB" in out.logs
