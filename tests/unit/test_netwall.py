"""The network wall's deny list: what WARREN_SANDBOX_DENY and the fleet's URLs turn into."""

from __future__ import annotations

import pytest

from sandbox.isolation import deny_list
from sandbox.netwall import Deny, check_mode, from_urls, parse, ruleset
from warren.errors import ConfigError, InvalidParameter


def test_the_fleets_own_services_and_the_metadata_address_are_denied_by_default():
    denied = deny_list({"WARREN_AMQP_URL": "amqps://warren:secret@127.0.0.1/%2F",
                        "WARREN_REDIS_URL": "rediss://:pw@127.0.0.1:6380/0"})
    assert Deny("127.0.0.1/32", 5671, local=True) in denied
    assert Deny("127.0.0.1/32", 6380, local=True) in denied
    assert Deny("169.254.169.254/32", None) in denied


def test_warren_sandbox_deny_replaces_the_extra_list_but_never_the_fleets_services():
    denied = deny_list({"WARREN_SANDBOX_DENY": "10.1.0.0/16:5432, [::1]:11211"})
    assert Deny("10.1.0.0/16", 5432) in denied
    assert Deny("::1/128", 11211, local=True) in denied
    assert Deny("127.0.0.1/32", 6379, local=True) in denied  # the default Redis, always
    assert all(d.network != "169.254.169.254/32" for d in denied)


def test_a_unix_socket_redis_has_no_address_to_deny():
    assert from_urls(["unix:///run/redis/redis.sock", "redis+unix:///x.sock"]) == []


def test_bad_entries_are_refused_with_the_variables_name():
    with pytest.raises(ConfigError, match="WARREN_SANDBOX_DENY"):
        parse("127.0.0.1:notaport")
    with pytest.raises(ConfigError, match="out of range"):
        parse("127.0.0.1:70000")


def test_a_local_service_is_denied_on_every_local_address_a_remote_one_by_address():
    text = ruleset(700000, 759999, [Deny("127.0.0.1/32", 6379, local=True),
                                    Deny("10.0.0.0/8", None)])
    assert "meta skuid 700000-759999 fib daddr type local tcp dport 6379 reject" in text
    assert "meta skuid 700000-759999 ip daddr 10.0.0.0/8 reject" in text
    assert text.startswith("table inet warren_sandbox_700000 {}\nflush table")


def test_network_modes():
    # Every runtime can have either: an external runtime's Runtime API listener is made inside
    # its namespace (sandbox/netns.py).
    assert check_mode("none") == "none" and check_mode("default") == "default"
    with pytest.raises(InvalidParameter):
        check_mode("host")


def test_network_none_fails_closed_where_no_namespace_can_be_built():
    from sandbox.isolation import Enforcement, Isolation
    from warren.errors import SandboxError

    # Given a sandbox whose walls are down (no root, no namespaces)
    down = Enforcement(memory="rlimit-as", processes="none", kill="process-group",
                       user="caller", unenforced=("walls: needs root",))
    # Then a function that asked for no network is not run at all, rather than with the network
    with pytest.raises(SandboxError, match="--network none cannot be built here"):
        Isolation().walls_spec(down, "none", 128)
    # while one that did not ask still runs
    assert Isolation().walls_spec(down, "default", 128)["network"] == "default"
