"""Aliases in the registry (real Redis): versions, weights, names, as Lambda has them."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from warren.errors import Conflict, InvalidParameter, NotFound
from warren.function import LATEST
from warren.store.registry import Registry

# ---- aliases --------------------------------------------------------------------------------


@pytest.fixture
def two_versions(registry: Registry, code: Path) -> str:
    registry.create_function("al", code=code, handler="app.handler")
    registry.publish_version("al")
    registry.update_function("al", memory_mb=256)
    registry.publish_version("al")
    registry.update_function("al", memory_mb=512)  # $LATEST differs from both versions
    return "al"


def test_alias_points_get_and_resolve_at_its_version(registry: Registry, two_versions: str):
    alias = registry.create_alias(two_versions, "live", "1", description="prod")
    assert alias.arn == "arn:aws:lambda:us-east-1:000000000000:function:al:live"
    assert registry.get_alias("al", "live") == alias
    assert registry.get_function("al", "live").version == "1"
    assert registry.resolve("al", "live").version == "1"
    assert registry.resolve("al").version == LATEST
    assert registry.resolve("al", "2").memory_mb == 256


def test_alias_may_point_at_latest_without_weights(registry: Registry, two_versions: str):
    registry.create_alias(two_versions, "dev", LATEST)
    assert registry.resolve("al", "dev").memory_mb == 512
    with pytest.raises(InvalidParameter, match="\\$LATEST cannot take weights"):
        registry.create_alias("al", "mixed", LATEST, weights={"2": 0.5})


def test_weighted_alias_splits_within_four_points(registry: Registry, two_versions: str):
    registry.create_alias(two_versions, "canary", "1", weights={"2": 0.1})
    rng = random.Random(20240611)
    counts = Counter(registry.resolve("al", "canary", rng=rng).version for _ in range(1000))
    assert counts.keys() == {"1", "2"}
    assert abs(counts["2"] / 1000 - 0.1) <= 0.04
    # get_function reports the primary version only.
    assert registry.get_function("al", "canary").version == "1"


def test_weights_at_the_edges_route_all_or_nothing(registry: Registry, two_versions: str):
    registry.create_alias(two_versions, "all", "1", weights={"2": 1.0})
    registry.create_alias(two_versions, "none", "1", weights={"2": 0.0})
    assert {registry.resolve("al", "all").version for _ in range(50)} == {"2"}
    assert {registry.resolve("al", "none").version for _ in range(50)} == {"1"}


@pytest.mark.parametrize(
    ("version", "weights", "error", "message"),
    [
        ("9", None, NotFound, "publish it first"),
        ("1", {"9": 0.1}, NotFound, "publish it first"),
        ("1", {"2": 1.5}, InvalidParameter, "0.0-1.0"),
        ("1", {"2": -0.1}, InvalidParameter, "0.0-1.0"),
        ("1", {"2": float("nan")}, InvalidParameter, "0.0-1.0"),
        ("1", {"1": 0.5}, InvalidParameter, "must differ"),
        ("1", {"2": 0.1, "3": 0.1}, InvalidParameter, "at most one"),
        ("1", {LATEST: 0.1}, InvalidParameter, "\\$LATEST"),
        ("one", None, InvalidParameter, "not a version"),
    ],
)
def test_invalid_alias_targets_are_refused(
    registry: Registry, two_versions: str, version, weights, error, message
):
    with pytest.raises(error, match=message):
        registry.create_alias(two_versions, "bad", version, weights=weights)
    assert registry.list_aliases("al") == []


@pytest.mark.parametrize("alias", ["123", "has space", "a" * 129, "$LATEST", ""])
def test_invalid_alias_names_are_refused(registry: Registry, two_versions: str, alias: str):
    with pytest.raises(InvalidParameter, match="alias name"):
        registry.create_alias(two_versions, alias, "1")


def test_alias_names_may_mix_digits_and_letters(registry: Registry, two_versions: str):
    registry.create_alias(two_versions, "v2-blue_1", "2")
    registry.create_alias(two_versions, "2a", "1")
    assert [a.name for a in registry.list_aliases("al")] == ["2a", "v2-blue_1"]


def test_creating_an_existing_alias_is_a_conflict(registry: Registry, two_versions: str):
    registry.create_alias(two_versions, "live", "1")
    with pytest.raises(Conflict, match="already exists"):
        registry.create_alias(two_versions, "live", "2")


def test_update_alias_moves_and_reweights(registry: Registry, two_versions: str):
    registry.create_alias(two_versions, "live", "1", weights={"2": 0.2})
    moved = registry.update_alias("al", "live", description="kept weights")
    assert moved.weights == {"2": 0.2} and moved.version == "1"
    cleared = registry.update_alias("al", "live", version="2", weights={})
    assert (cleared.version, cleared.weights) == ("2", {})
    assert registry.get_alias("al", "live") == cleared
    with pytest.raises(InvalidParameter, match="must differ"):
        registry.update_alias("al", "live", weights={"2": 0.5})
    with pytest.raises(NotFound, match="alias nope"):
        registry.update_alias("al", "nope", version="1")


def test_delete_alias(registry: Registry, two_versions: str):
    registry.create_alias(two_versions, "live", "1")
    registry.delete_alias("al", "live")
    assert registry.list_aliases("al") == []
    with pytest.raises(NotFound, match="alias live of function al"):
        registry.delete_alias("al", "live")
    with pytest.raises(NotFound, match="alias live"):
        registry.resolve("al", "live")
