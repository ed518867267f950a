"""warren.Client: built from the environment or settings, delegating to the registry and invoker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

import warren
from warren.client import Client
from warren.errors import ConfigError, NotFound, StoreUnavailable
from warren.settings import Settings


@pytest.fixture
def environ(redis_url: str, amqp_url: str, unique: str) -> Iterator[dict[str, str]]:
    prefix = f"test-{unique}"
    yield {"WARREN_REDIS_URL": redis_url, "WARREN_AMQP_URL": amqp_url, "WARREN_PREFIX": prefix}
    conn = redis.Redis.from_url(redis_url)
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)
    conn.close()


def test_client_reads_urls_and_prefix_from_the_given_environ(environ: dict[str, str]):
    with warren.Client(environ=environ) as client:
        assert client.settings.redis.url == environ["WARREN_REDIS_URL"]
        assert client.settings.prefix == environ["WARREN_PREFIX"]
        assert client.registry.prefix == environ["WARREN_PREFIX"]


def test_explicit_urls_win_over_the_environ(environ: dict[str, str]):
    client = Client("amqp://u:p@broker:5672/%2F", "redis://store:6380/2", environ=environ)
    assert client.settings.amqp.host == "broker"
    assert (client.settings.redis.host, client.settings.redis.port) == ("store", 6380)
    client.close()


def test_client_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch, environ: dict[str, str]):
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    with Client() as client:
        assert client.settings.prefix == environ["WARREN_PREFIX"]


def test_a_bad_url_is_a_config_error():
    with pytest.raises(ConfigError):
        Client(redis_url="http://not-redis", environ={})


def test_registry_operations_round_trip(environ: dict[str, str], code: Path):
    with Client(environ=environ) as client:
        spec = client.create_function("cli", code=str(code), handler="app.handler", memory_mb=256)
        assert client.get_function("cli") == spec
        assert [f.name for f in client.list_functions()] == ["cli"]
        client.update_function("cli", timeout_s=20)
        version = client.publish_version("cli", "first")
        assert (version.version, version.timeout_s, version.description) == ("1", 20, "first")
        alias = client.create_alias("cli", "live", "1")
        assert client.get_alias("cli", "live") == alias
        client.update_alias("cli", "live", description="prod")
        assert [a.description for a in client.list_aliases("cli")] == ["prod"]
        client.delete_alias("cli", "live")
        client.set_concurrency("cli", 2)
        assert client.get_concurrency("cli") == 2
        client.clear_concurrency("cli")
        assert client.get_concurrency("cli") is None
        assert [v.version for v in client.list_versions("cli")] == ["$LATEST", "1"]
        client.delete_function("cli")
        with pytest.raises(NotFound):
            client.get_function("cli")


def test_from_settings_uses_those_settings(environ: dict[str, str], code: Path):
    settings = Settings.from_environ(environ | {"WARREN_ACCOUNT_CONCURRENCY": "10"})
    with Client.from_settings(settings) as client:
        assert client.settings is settings
        assert client.registry.account_concurrency == 10


def test_invoking_an_unknown_function_is_not_found(environ: dict[str, str]):
    pytest.importorskip("router.dispatch")
    with Client(environ=environ) as client, pytest.raises(NotFound, match="ghost"):
        client.invoke("ghost", {"x": 1})


def test_a_dry_run_resolves_the_function_without_running_it(environ: dict[str, str], code: Path):
    pytest.importorskip("router.dispatch")
    with Client(environ=environ) as client:
        client.create_function("dry", code=code, handler="app.handler")
        client.publish_version("dry")
        result = client.invoke("dry", {"x": 1}, qualifier="1", invocation_type="DryRun")
        assert result.status_code == 204
        assert result.executed_version == "1"


def test_an_unreachable_redis_surfaces_as_store_unavailable():
    with Client(redis_url="redis://127.0.0.1:1/0", environ={}) as client:
        with pytest.raises(StoreUnavailable, match="cannot reach Redis at redis://127.0.0.1:1/0"):
            client.list_functions()
