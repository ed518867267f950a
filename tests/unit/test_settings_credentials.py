"""Credentials in WARREN_AMQP_URL / WARREN_REDIS_URL: accepted in every form, never echoed."""

from __future__ import annotations

import pytest

from warren.errors import ConfigError
from warren.settings import AmqpSettings, RedisSettings, Settings, redact


def test_a_warren_user_and_password_are_taken_from_the_urls():
    settings = Settings.from_environ({
        "WARREN_AMQP_URL": "amqps://warren:s%3Acret@mq.example:5671/warren",
        "WARREN_REDIS_URL": "rediss://warren:t0ps3cret@redis.example:6380/2",
    })
    assert (settings.amqp.username, settings.amqp.password) == ("warren", "s:cret")
    assert (settings.amqp.port, settings.amqp.vhost) == (5671, "warren")
    redis = settings.redis
    assert (redis.host, redis.port, redis.db) == ("redis.example", 6380, 2)


def test_a_unix_socket_redis_url_is_accepted_with_its_db():
    settings = RedisSettings.from_url("unix:///run/redis/redis.sock?db=3")
    assert settings.db == 3


@pytest.mark.parametrize("url", [
    "amqp://warren:hunter2@127.0.0.1:notaport/%2F",
    "http://warren:hunter2@127.0.0.1/",
])
def test_a_bad_amqp_url_is_refused_without_its_password(url):
    with pytest.raises(ConfigError) as caught:
        AmqpSettings.from_url(url)
    assert "hunter2" not in str(caught.value) and "warren:***@" in str(caught.value)


@pytest.mark.parametrize("url", [
    "redis://:hunter2@127.0.0.1:6379/notadb",
    "memcached://hunter2@127.0.0.1/",
])
def test_a_bad_redis_url_is_refused_without_its_password(url):
    with pytest.raises(ConfigError) as caught:
        RedisSettings.from_url(url)
    assert "hunter2" not in str(caught.value)


def test_redact_keeps_the_user_and_hides_the_password():
    assert redact("redis://warren:pw@h:1/0") == "redis://warren:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    assert redact("redis://tokenonly@h:1/0") == "redis://***@h:1/0"
