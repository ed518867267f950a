"""Layer versions in Redis: numbering, listing, deletion that spares users, hostile archives."""

from __future__ import annotations

import io
import stat
import zipfile
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import pytest
import redis

from warren import bundle
from warren.errors import CodeBundleError, InvalidParameter, NotFound
from warren.store.coderefs import GRACE_S
from warren.store.codes import CodeStore
from warren.store.registry import Registry


@pytest.fixture
def prefix(conn: redis.Redis, unique: str) -> Iterator[str]:
    prefix = f"test-{unique}"
    yield prefix
    keys = list(conn.scan_iter(f"{prefix}:*"))
    if keys:
        conn.delete(*keys)


@pytest.fixture
def reg(conn: redis.Redis, prefix: str) -> Registry:
    return Registry(conn, CodeStore(conn, prefix), prefix)


def tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def zip_file(tmp_path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    path = tmp_path / "layer.zip"
    path.write_bytes(buffer.getvalue())
    return path


def link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def test_versions_are_numbered_immutable_and_never_reused(reg: Registry, tmp_path: Path) -> None:
    a = tree(tmp_path / "a", {"python/mod.py": "X = 1\n"})
    b = tree(tmp_path / "b", {"python/mod.py": "X = 2\n"})
    one = reg.layers.publish("libs", a, ["python3.11"], "first")
    two = reg.layers.publish("libs", b)
    assert (one.version, two.version) == (1, 2)
    assert one.code_sha256 != two.code_sha256
    assert one.arn.endswith(":layer:libs:1")
    assert reg.layers.get("libs", 1) == one
    assert [x.version for x in reg.layers.versions("libs")] == [1, 2]
    assert [(x.name, x.version) for x in reg.layers.latest()] == [("libs", 2)]
    reg.layers.delete("libs", 2)
    three = reg.layers.publish("libs", b)  # the same content again: a new number all the same
    assert three.version == 3 and three.code_sha256 == two.code_sha256
    reg.layers.delete("libs", 1)
    reg.layers.delete("libs", 3)
    assert reg.layers.latest() == [] and reg.layers.versions("libs") == []
    assert reg.layers.publish("libs", a).version == 4
    with pytest.raises(NotFound, match="libs:9 does not exist"):
        reg.layers.get("libs", 9)
    with pytest.raises(NotFound):
        reg.layers.delete("libs", 9)


def test_a_deleted_layer_version_stays_for_the_functions_that_use_it(
    conn: redis.Redis, reg: Registry, tmp_path: Path
) -> None:
    layer = reg.layers.publish("deps", tree(tmp_path / "l", {"python/dep.py": "V = 1\n"}))
    code = tree(tmp_path / "c", {"app.py": "def handler(e, c):\n    return e\n"})
    spec = reg.create_function("user", code=code, handler="app.handler", layers=["deps:1"])
    assert [x.code_sha256 for x in spec.layers] == [layer.code_sha256]
    reg.publish_version("user")
    key = reg.codes.key(layer.code_sha256)
    reg.layers.delete("deps", 1)
    assert conn.ttl(key) == -1  # $LATEST and version 1 run it
    assert reg.get_function("user", "1").layers[0].code_sha256 == layer.code_sha256
    with pytest.raises(NotFound, match="deps:1"):
        reg.create_function("late", code=code, handler="app.handler", layers=["deps:1"])
    reg.update_function("user", layers=[])  # $LATEST lets go; version 1 still holds it
    assert conn.ttl(key) == -1
    reg.delete_function("user")
    assert 0 < conn.ttl(key) <= GRACE_S


def test_function_layers_keep_their_order_and_their_limits(
    reg: Registry, tmp_path: Path
) -> None:
    code = tree(tmp_path / "c", {"app.py": "def handler(e, c):\n    return e\n"})
    for i in range(6):
        reg.layers.publish(f"l{i}", tree(tmp_path / f"l{i}", {f"f{i}": str(i)}))
    spec = reg.create_function("f", code=code, handler="app.handler",
                               layers=["l2:1", "arn:aws:lambda:us-east-1:000000000000:layer:l0:1"])
    assert [x.name for x in spec.layers] == ["l2", "l0"]
    assert reg.get_function("f").layers == spec.layers
    with pytest.raises(InvalidParameter, match="at most 5 layers"):
        reg.update_function("f", layers=[f"l{i}:1" for i in range(6)])
    with pytest.raises(InvalidParameter, match="one version of each layer"):
        reg.update_function("f", layers=["l1:1", "l1:1"])
    with pytest.raises(InvalidParameter, match="NAME:VERSION"):
        reg.update_function("f", layers=["l1"])
    assert reg.update_function("f", memory_mb=256).layers == spec.layers  # unchanged if not given
    published = reg.publish_version("f")
    changed = reg.update_function("f", layers=["l0:1", "l2:1"])
    assert reg.publish_version("f").version != published.version  # the order is configuration
    assert [x.name for x in changed.layers] == ["l0", "l2"]


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ([("python/ok.py", b""), ("../../etc/evil", b"x")], "zip slip"),
        ([("/opt/evil", b"x")], "absolute"),
        ([(link("python/passwd"), b"/etc/passwd")], "symlink"),
        ([("lib", b"x"), ("lib", b"y")], "twice"),
    ],
)
def test_hostile_layer_archives_are_refused_as_code_bundles_are(
    reg: Registry, tmp_path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]],
    reason: str,
) -> None:
    with pytest.warns(UserWarning) if reason == "twice" else nullcontext():
        path = zip_file(tmp_path, entries)
    with pytest.raises(CodeBundleError, match=reason):
        reg.layers.publish("evil", path)
    assert reg.layers.versions("evil") == []


def test_a_layer_zip_bomb_is_refused_without_a_version(
    reg: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = zip_file(tmp_path, [("zeros.bin", bytes(4 * 1024 * 1024))])
    monkeypatch.setattr(bundle, "MAX_UNPACKED_BYTES", 1024 * 1024)
    with pytest.raises(CodeBundleError, match="250 MB"):
        reg.layers.publish("bomb", path)
    assert reg.layers.latest() == []


def test_a_layer_directory_with_a_symlink_is_refused(reg: Registry, tmp_path: Path) -> None:
    root = tree(tmp_path / "l", {"python/ok.py": ""})
    (root / "python" / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(CodeBundleError, match="symlink"):
        reg.layers.publish("evil", root)


def test_layer_names_and_runtimes_are_checked(reg: Registry, tmp_path: Path) -> None:
    root = tree(tmp_path / "l", {"x": ""})
    with pytest.raises(InvalidParameter, match="layer name"):
        reg.layers.publish("bad name", root)
    with pytest.raises(InvalidParameter, match="not supported"):
        reg.layers.publish("ok", root, ["cobol"])
