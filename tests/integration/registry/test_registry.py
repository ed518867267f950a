"""The registry in real Redis: functions, versions, aliases and reservations, as Lambda has them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from warren.errors import Conflict, InvalidParameter, NotFound, StoreUnavailable
from warren.function import LATEST, FunctionSpec
from warren.store.codes import CodeStore
from warren.store.registry import Registry
from warren.store.reservations import unreserved_minimum


def other_code(tmp_path: Path, body: str) -> Path:
    root = tmp_path / f"code-{abs(hash(body))}"
    root.mkdir()
    (root / "app.py").write_text(body)
    return root


# ---- functions ------------------------------------------------------------------------------


def test_create_then_get_returns_the_same_latest_spec(registry: Registry, code: Path):
    created = registry.create_function(
        "hello",
        code=code,
        handler="app.handler",
        memory_mb=256,
        timeout_s=30,
        env={"GREETING": "hi"},
        description="says hi",
        max_retries=1,
        max_event_age_s=600,
        on_success="amqp:///ok",
        on_failure="redis+stream:///failed",
    )
    assert registry.get_function("hello") == created
    assert registry.get_function("hello", LATEST) == created
    assert created.version == LATEST
    assert created.memory_mb == 256 and created.timeout_s == 30
    assert created.env == {"GREETING": "hi"}
    assert created.async_config.max_retries == 1
    assert created.async_config.on_failure == "redis+stream:///failed"
    assert len(created.code_sha256) == 64 and created.code_size > 0
    assert registry.codes.exists(created.code_sha256)
    assert created.arn == "arn:aws:lambda:us-east-1:000000000000:function:hello"


def test_defaults_are_lambdas(registry: Registry, code: Path):
    spec = registry.create_function("defaults", code=code, handler="app.handler")
    assert (spec.runtime, spec.memory_mb, spec.timeout_s) == ("python3.11", 128, 3)
    assert spec.async_config.max_retries == 2
    assert spec.async_config.max_event_age_s == 21600
    assert registry.get_concurrency("defaults") is None
    assert spec.pool == "default"


def test_spec_round_trips_through_a_plain_dict(registry: Registry, code: Path):
    spec = registry.create_function("rt", code=code, handler="app.handler", env={"AB": "1"})
    assert FunctionSpec.from_dict(spec.to_dict()) == spec
    assert hash(spec) == hash(FunctionSpec.from_dict(spec.to_dict()))


def test_creating_an_existing_function_is_a_conflict(registry: Registry, code: Path):
    registry.create_function("twice", code=code, handler="app.handler")
    with pytest.raises(Conflict, match="already exists"):
        registry.create_function("twice", code=code, handler="app.other")
    assert registry.get_function("twice").handler == "app.handler"


def test_unknown_functions_are_not_found(registry: Registry):
    for call in (
        lambda: registry.get_function("ghost"),
        lambda: registry.resolve("ghost"),
        lambda: registry.update_function("ghost", memory_mb=256),
        lambda: registry.delete_function("ghost"),
        lambda: registry.publish_version("ghost"),
        lambda: registry.list_aliases("ghost"),
        lambda: registry.list_versions("ghost"),
        lambda: registry.set_concurrency("ghost", 1),
        lambda: registry.clear_concurrency("ghost"),
        lambda: registry.create_alias("ghost", "live", "1"),
    ):
        with pytest.raises(NotFound, match="function ghost does not exist"):
            call()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "bad name"}, "function name"),
        ({"name": "x" * 65}, "function name"),
        ({"name": ""}, "function name"),
        ({"handler": "nodot"}, "handler"),
        ({"handler": "app.1func"}, "handler"),
        ({"handler": "a b.c"}, "handler"),
        ({"handler": "../outside.handler"}, "handler"),
        ({"handler": "pkg/../../etc.handler"}, "handler"),
        ({"handler": "/abs/mod.handler"}, "handler"),
        ({"handler": "a..handler"}, "handler"),
        ({"runtime": "nodejs4.3"}, "runtime"),
        ({"runtime": "python2.7"}, "runtime"),
        ({"memory_mb": 127}, "128-10240"),
        ({"memory_mb": 10241}, "128-10240"),
        ({"timeout_s": 0}, "1-900"),
        ({"timeout_s": 901}, "1-900"),
        ({"max_retries": 3}, "0-2"),
        ({"max_retries": -1}, "0-2"),
        ({"max_event_age_s": 59}, "60-21600"),
        ({"max_event_age_s": 21601}, "60-21600"),
        ({"on_success": "sqs://queue"}, "amqp:///QUEUE"),
        ({"on_failure": "amqp://host/queue"}, "amqp:///QUEUE"),
        ({"on_failure": "redis+stream:///"}, "redis\\+stream:///STREAM"),
        ({"env": {"1BAD": "x"}}, "start with a letter"),
        ({"env": {"A": "x"}}, "start with a letter"),
        ({"env": {"AWS_REGION": "eu-west-1"}}, "reserved"),
        ({"env": {"_HANDLER": "x"}}, "start with a letter"),
        ({"env": {"LAMBDA_TASK_ROOT": "/tmp"}}, "reserved"),
        ({"env": {"BIG": "x" * 4096}}, "4 KB"),
        ({"description": "d" * 257}, "description"),
        ({"pool": "gpu pool"}, "pool"),
        ({"pool": ""}, "pool"),
        ({"pool": "p" * 65}, "pool"),
        ({"concurrency": -1}, "whole number"),
        ({"concurrency": 901}, "at most 900"),
    ],
)
def test_invalid_settings_are_refused_with_a_fix(
    registry: Registry, code: Path, conn: redis.Redis, overrides: dict, message: str
):
    args = {"name": "valid", "code": code, "handler": "app.handler"} | overrides
    name = args.pop("name")
    with pytest.raises(InvalidParameter, match=message):
        registry.create_function(name, **args)
    assert registry.list_functions() == []
    assert list(conn.scan_iter(registry.codes.key("*"))) == []  # refused before storing code


def test_environment_at_exactly_4_kb_is_accepted(registry: Registry, code: Path):
    value = "v" * (4096 - len('{"KEY":""}'))
    spec = registry.create_function("full", code=code, handler="app.handler", env={"KEY": value})
    assert spec.env["KEY"] == value
    with pytest.raises(InvalidParameter, match="4 KB"):
        registry.update_function("full", env={"KEY": value + "v"})


def test_handler_forms_lambda_accepts(registry: Registry, code: Path):
    for handler in ("app.handler", "pkg.mod.handler", "pkg/mod.handler", "my-app._handle"):
        registry.create_function(f"h{abs(hash(handler))}", code=code, handler=handler)


def test_update_changes_only_what_is_given(registry: Registry, code: Path, tmp_path: Path):
    before = registry.create_function(
        "upd", code=code, handler="app.handler", env={"KEEP": "1"}, on_failure="amqp:///f"
    )
    after = registry.update_function("upd", memory_mb=512)
    assert after.memory_mb == 512 and after.pool == "default"
    assert registry.update_function("upd", pool="big").pool == "big"
    after = registry.update_function("upd", pool="default")
    assert after.env == {"KEEP": "1"} and after.handler == "app.handler"
    assert after.code_sha256 == before.code_sha256
    assert after.async_config.on_failure == "amqp:///f"
    assert registry.get_function("upd") == after

    new_code = other_code(tmp_path, "def handler(e, c):\n    return 2\n")
    changed = registry.update_function("upd", code=new_code, on_failure="", env={})
    assert changed.code_sha256 != before.code_sha256
    assert changed.async_config.on_failure is None
    assert changed.env == {}


def test_an_invalid_update_leaves_the_function_unchanged(
    registry: Registry, code: Path, tmp_path: Path, conn: redis.Redis
):
    before = registry.create_function("keep", code=code, handler="app.handler")
    new_code = other_code(tmp_path, "def handler(e, c):\n    return 3\n")
    with pytest.raises(InvalidParameter, match="1-900"):
        registry.update_function("keep", code=new_code, memory_mb=512, timeout_s=1000)
    with pytest.raises(NotFound):
        registry.update_function("absent", code=new_code)
    assert registry.get_function("keep") == before
    assert len(list(conn.scan_iter(registry.codes.key("*")))) == 1  # the new code was not stored


def test_list_functions_is_sorted_by_name(registry: Registry, code: Path):
    for name in ("b", "a", "c"):
        registry.create_function(name, code=code, handler="app.handler")
    assert [s.name for s in registry.list_functions()] == ["a", "b", "c"]


def test_delete_removes_versions_aliases_and_reservation(
    registry: Registry, code: Path, conn: redis.Redis
):
    registry.create_function("gone", code=code, handler="app.handler", concurrency=5)
    registry.publish_version("gone")
    registry.create_alias("gone", "live", "1")
    registry.delete_function("gone")
    with pytest.raises(NotFound):
        registry.get_function("gone")
    assert registry.reservations() == {}
    assert registry.list_functions() == []
    assert not conn.exists(registry.function_key("gone"))
    # A new function of the same name starts from scratch.
    registry.create_function("gone", code=code, handler="app.handler")
    assert registry.publish_version("gone").version == "1"
    with pytest.raises(NotFound):
        registry.get_alias("gone", "live")


# ---- versions -------------------------------------------------------------------------------


def test_publish_snapshots_latest_as_immutable_numbered_versions(
    registry: Registry, code: Path
):
    registry.create_function("ver", code=code, handler="app.handler", description="base")
    v1 = registry.publish_version("ver")
    assert v1.version == "1" and v1.description == "base"
    assert v1.arn == "arn:aws:lambda:us-east-1:000000000000:function:ver:1"
    registry.update_function("ver", memory_mb=1024)
    v2 = registry.publish_version("ver", description="bigger")
    assert (v2.version, v2.memory_mb, v2.description) == ("2", 1024, "bigger")
    assert registry.get_function("ver", "1").memory_mb == 128  # version 1 did not move
    assert [s.version for s in registry.list_versions("ver")] == [LATEST, "1", "2"]


def test_publish_without_changes_returns_the_last_version(registry: Registry, code: Path):
    registry.create_function("same", code=code, handler="app.handler")
    first = registry.publish_version("same")
    assert registry.publish_version("same") == first
    registry.update_function("same", timeout_s=10)
    registry.update_function("same", timeout_s=3)  # back to what version 1 holds
    assert registry.publish_version("same") == first
    assert registry.update_function("same", timeout_s=5)
    assert registry.publish_version("same").version == "2"


def test_unknown_version_is_not_found(registry: Registry, code: Path):
    registry.create_function("nov", code=code, handler="app.handler")
    with pytest.raises(NotFound, match="version 7 of function nov"):
        registry.get_function("nov", "7")


# ---- reserved concurrency -------------------------------------------------------------------


def test_reservations_keep_100_unreserved_on_a_1000_account(registry: Registry, code: Path):
    for name in ("r1", "r2", "r3"):
        registry.create_function(name, code=code, handler="app.handler")
    registry.set_concurrency("r1", 600)
    registry.set_concurrency("r2", 300)
    with pytest.raises(InvalidParameter, match="at most 0 is available"):
        registry.set_concurrency("r3", 1)
    registry.set_concurrency("r2", 250)  # lowering one's own reservation is always fine
    registry.set_concurrency("r3", 50)
    assert registry.reservations() == {"r1": 600, "r2": 250, "r3": 50}
    registry.clear_concurrency("r1")
    assert registry.get_concurrency("r1") is None
    assert registry.reservations() == {"r2": 250, "r3": 50}


def test_a_small_account_keeps_half_unreserved(make_registry, code: Path):
    registry = make_registry(account_concurrency=10)
    assert unreserved_minimum(10) == 5 and unreserved_minimum(1000) == 100
    registry.create_function("small", code=code, handler="app.handler")
    registry.set_concurrency("small", 5)
    with pytest.raises(InvalidParameter, match="at most 5 is available"):
        registry.set_concurrency("small", 6)
    with pytest.raises(InvalidParameter, match="at most 0 is available"):
        registry.create_function("other", code=code, handler="app.handler", concurrency=1)
    assert [s.name for s in registry.list_functions()] == ["small"]


def test_zero_reserved_concurrency_is_allowed(registry: Registry, code: Path):
    registry.create_function("off", code=code, handler="app.handler", concurrency=0)
    assert registry.get_concurrency("off") == 0
    assert registry.reservations() == {"off": 0}


def test_concurrency_can_be_set_on_update(registry: Registry, code: Path):
    registry.create_function("later", code=code, handler="app.handler")
    registry.update_function("later", concurrency=7)
    assert registry.get_concurrency("later") == 7
    with pytest.raises(InvalidParameter, match="at most 900"):
        registry.update_function("later", concurrency=901)
    assert registry.get_concurrency("later") == 7


# ---- the store being down -------------------------------------------------------------------


def test_an_unreachable_redis_is_store_unavailable(code: Path):
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    dead = redis.Redis("127.0.0.1", 1, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    registry = Registry(dead, CodeStore(dead, "x"), "x")
    for call in (
        lambda: registry.get_function("f"),
        lambda: registry.list_functions(),
        lambda: registry.create_function("f", code=code, handler="app.handler"),
        lambda: registry.set_concurrency("f", 1),
        lambda: registry.reservations(),
    ):
        with pytest.raises(StoreUnavailable, match="cannot reach Redis at redis://127.0.0.1:1/0"):
            call()


# ---- concurrent writers ---------------------------------------------------------------------


def run_together(calls: list[Callable[[], object]]) -> list[object]:
    """Start every call at once on its own thread; return each result or raised exception."""
    barrier = threading.Barrier(len(calls))
    results: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = calls[i]()
        except Exception as exc:  # collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_creates_of_one_name_give_one_function(
    registry: Registry, code: Path, tmp_path: Path
):
    results = run_together(
        [
            lambda i=i: registry.create_function("race", code=code, handler=f"app.h{i}")
            for i in range(8)
        ]
    )
    created = [r for r in results if isinstance(r, FunctionSpec)]
    assert len(created) == 1
    assert all(isinstance(r, Conflict) for r in results if r not in created)
    assert registry.get_function("race") == created[0]


def test_concurrent_reservations_never_exceed_the_account(registry: Registry, code: Path):
    names = [f"res{i}" for i in range(12)]
    for name in names:
        registry.create_function(name, code=code, handler="app.handler")
    results = run_together([lambda n=n: registry.set_concurrency(n, 100) for n in names])
    refused = [r for r in results if isinstance(r, InvalidParameter)]
    assert len(refused) == 3
    assert sum(registry.reservations().values()) == 900


def test_concurrent_publishes_number_versions_without_gaps_or_repeats(
    registry: Registry, code: Path
):
    registry.create_function("pub", code=code, handler="app.handler")

    def change_and_publish(memory: int) -> FunctionSpec:
        registry.update_function("pub", memory_mb=memory)
        return registry.publish_version("pub")

    run_together([lambda m=m: change_and_publish(m) for m in range(128, 136)])
    versions = registry.list_versions("pub")[1:]
    assert [v.version for v in versions] == [str(n) for n in range(1, len(versions) + 1)]
    assert 1 <= len(versions) <= 8
    fingerprints = [v.fingerprint() for v in versions]
    assert len(set(fingerprints)) == len(fingerprints)
