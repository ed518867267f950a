"""Settings are parsed once from an injected environment, with clear errors for bad values."""

import pytest

from warren.errors import ConfigError
from warren.settings import AmqpSettings, RedisSettings, Settings


def test_defaults_come_from_an_empty_environment():
    settings = Settings.from_environ({})
    assert settings.amqp.host == "127.0.0.1" and settings.amqp.port == 5672
    assert settings.amqp.vhost == "/"
    assert settings.redis.port == 6379 and settings.redis.db == 0
    assert settings.account_concurrency == 1000
    assert settings.prefix == "warren"
    assert settings.sync_lease_idle_s == 0.05


def test_environment_and_flags_override_defaults_flags_first():
    env = {
        "WARREN_AMQP_URL": "amqp://u:p%40ss@broker:5673/prod",
        "WARREN_REDIS_URL": "redis://cache:6380/2",
        "WARREN_ACCOUNT_CONCURRENCY": "50",
        "WARREN_PREFIX": "t1",
        "WARREN_SYNC_LEASE_IDLE_MS": "0",
    }
    settings = Settings.from_environ(env, redis_url="redis://other:1/3")
    assert (settings.amqp.host, settings.amqp.port, settings.amqp.vhost) == ("broker", 5673, "prod")
    assert settings.amqp.password == "p@ss"
    assert (settings.redis.host, settings.redis.db) == ("other", 3)
    assert settings.account_concurrency == 50
    assert settings.prefix == "t1"
    assert settings.sync_lease_idle_s == 0


@pytest.mark.parametrize(
    "env, fragment",
    [
        ({"WARREN_AMQP_URL": "http://x"}, "amqp://"),
        ({"WARREN_REDIS_URL": "mysql://x"}, "redis://"),
        ({"WARREN_REDIS_URL": "redis://x:6379/notadb"}, "bad Redis URL"),
        ({"WARREN_ACCOUNT_CONCURRENCY": "lots"}, "whole number"),
        ({"WARREN_ACCOUNT_CONCURRENCY": "0"}, "at least 1"),
        ({"WARREN_SYNC_LEASE_IDLE_MS": "soon"}, "WARREN_SYNC_LEASE_IDLE_MS must be 0"),
        ({"WARREN_SYNC_LEASE_IDLE_MS": "-5"}, "0 \\(off\\) to 10000"),
    ],
)
def test_bad_settings_fail_with_a_message_that_names_the_problem(env, fragment):
    with pytest.raises(ConfigError, match=fragment):
        Settings.from_environ(env)


def test_encoded_default_vhost_decodes_to_slash():
    assert AmqpSettings.from_url("amqp://guest:guest@127.0.0.1:5672/%2F").vhost == "/"
    assert RedisSettings.from_url("redis://127.0.0.1").db == 0
