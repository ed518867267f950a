"""Code bundles: deterministic packing, and unpacking that refuses anything that could escape."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path

import pytest

from warren import bundle
from warren.errors import CodeBundleError


def make_zip(entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return buffer.getvalue()


def entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = mode << 16
    return info


@pytest.fixture
def code_dir(tmp_path: Path) -> Path:
    root = tmp_path / "code"
    (root / "pkg").mkdir(parents=True)
    (root / "app.py").write_text("def handler(event, context):\n    return event\n")
    (root / "pkg" / "__init__.py").write_text("")
    (root / "run.sh").write_text("#!/bin/sh\n")
    (root / "run.sh").chmod(0o750)
    return root


def test_packing_a_directory_twice_gives_identical_bytes(code_dir: Path) -> None:
    first = bundle.pack_dir(code_dir)
    os.utime(code_dir / "app.py", (1_000_000, 1_000_000))  # mtimes must not matter
    assert bundle.pack_dir(code_dir) == first
    names = zipfile.ZipFile(io.BytesIO(first)).namelist()
    assert names == ["app.py", "pkg/__init__.py", "run.sh"]


def test_packing_skips_bytecode_caches(code_dir: Path) -> None:
    clean = bundle.pack_dir(code_dir)
    (code_dir / "__pycache__").mkdir()
    (code_dir / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\x00junk")
    (code_dir / "stale.pyc").write_bytes(b"\x00junk")
    assert bundle.pack_dir(code_dir) == clean


def test_packing_changes_when_content_changes(code_dir: Path) -> None:
    before = bundle.pack_dir(code_dir)
    (code_dir / "app.py").write_text("def handler(event, context):\n    return 1\n")
    assert bundle.pack_dir(code_dir) != before


def test_packing_refuses_a_symlink_in_the_directory(code_dir: Path) -> None:
    (code_dir / "secret").symlink_to("/etc/passwd")
    with pytest.raises(CodeBundleError, match="symlink"):
        bundle.pack_dir(code_dir)


def test_packing_refuses_a_symlinked_directory(code_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (code_dir / "linked").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CodeBundleError, match="symlink"):
        bundle.pack_dir(code_dir)


def test_read_accepts_a_zip_file_as_is(tmp_path: Path) -> None:
    data = make_zip([("app.py", b"x = 1\n")])
    path = tmp_path / "code.zip"
    path.write_bytes(data)
    assert bundle.read(path) == data


def test_read_refuses_a_file_that_is_not_a_zip(tmp_path: Path) -> None:
    path = tmp_path / "app.py"
    path.write_text("x = 1\n")
    with pytest.raises(CodeBundleError, match="not a zip"):
        bundle.read(path)


def test_read_refuses_a_missing_path(tmp_path: Path) -> None:
    with pytest.raises(CodeBundleError, match="does not exist"):
        bundle.read(tmp_path / "nowhere")


def test_read_refuses_a_zip_over_50_mb(tmp_path: Path) -> None:
    path = tmp_path / "big.zip"
    with path.open("wb") as sink:
        sink.truncate(bundle.MAX_ZIPPED_BYTES + 1)
    with pytest.raises(CodeBundleError, match="50 MB"):
        bundle.read(path)


def test_packing_refuses_a_directory_that_zips_over_the_cap(
    code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (code_dir / "noise.bin").write_bytes(os.urandom(64 * 1024))
    monkeypatch.setattr(bundle, "MAX_ZIPPED_BYTES", 32 * 1024)
    with pytest.raises(CodeBundleError, match="50 MB zipped"):
        bundle.pack_dir(code_dir)


def test_packing_refuses_a_directory_over_250_mb_unpacked(
    code_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bundle, "MAX_UNPACKED_BYTES", 10)
    with pytest.raises(CodeBundleError, match="250 MB"):
        bundle.pack_dir(code_dir)


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("../evil.py", "zip slip"),
        ("pkg/../../evil.py", "zip slip"),
        ("/etc/cron.d/evil", "absolute"),
        ("C:/evil.py", "absolute"),
        ("..\\evil.py", "'/'"),
    ],
)
def test_unpacking_refuses_paths_that_escape(tmp_path: Path, name: str, reason: str) -> None:
    data = make_zip([("app.py", b"ok"), (name, b"pwned")])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CodeBundleError, match=reason):
        bundle.unpack(data, dest)
    with pytest.raises(CodeBundleError, match=reason):
        bundle.verify(data)
    assert not (tmp_path / "evil.py").exists()


def test_unpacking_refuses_a_symlink_entry(tmp_path: Path) -> None:
    data = make_zip([(entry("link", stat.S_IFLNK | 0o777), b"/etc/passwd")])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CodeBundleError, match="symlink"):
        bundle.unpack(data, dest)
    assert list(dest.iterdir()) == []


def test_unpacking_refuses_special_files(tmp_path: Path) -> None:
    data = make_zip([(entry("fifo", stat.S_IFIFO | 0o644), b"")])
    with pytest.raises(CodeBundleError, match="not a file or directory"):
        bundle.verify(data)


def test_unpacking_refuses_duplicate_entries(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("app.py", b"one")
        with pytest.warns(UserWarning, match="Duplicate name"):
            archive.writestr("app.py", b"two")
    with pytest.raises(CodeBundleError, match="twice"):
        bundle.verify(buffer.getvalue())


def test_unpacking_refuses_a_zip_bomb_by_declared_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 4 MB of zeros compresses to a few KB: the bomb shape, scaled down by lowering the cap.
    data = make_zip([("zeros.bin", bytes(4 * 1024 * 1024))])
    assert len(data) < 64 * 1024
    monkeypatch.setattr(bundle, "MAX_UNPACKED_BYTES", 1024 * 1024)
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CodeBundleError, match="250 MB"):
        bundle.unpack(data, dest)
    assert list(dest.iterdir()) == []


def test_unpacking_refuses_an_entry_that_lies_about_its_size(tmp_path: Path) -> None:
    data = bytearray(make_zip([("app.py", b"A" * 1000)]))
    # Shrink the declared size in the central directory: decompression must stop, not trust it.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CodeBundleError, match="cannot be read"):
        bundle.unpack(bytes(data), dest)


def test_unpacking_refuses_too_many_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip([(f"m{i}.py", b"") for i in range(5)])
    monkeypatch.setattr(bundle, "MAX_ENTRIES", 4)
    with pytest.raises(CodeBundleError, match="at most 4"):
        bundle.verify(data)


def test_unpacking_refuses_a_corrupt_entry() -> None:
    data = bytearray(make_zip([("app.py", b"print('hello world')\n" * 50)]))
    start = data.find(b"app.py") + len("app.py") + 5
    data[start : start + 8] = b"\xff" * 8
    with pytest.raises(CodeBundleError, match="cannot be read"):
        bundle.verify(bytes(data))


def test_unpacking_refuses_garbage() -> None:
    with pytest.raises(CodeBundleError, match="not a valid zip"):
        bundle.verify(b"definitely not a zip")


def test_unpacked_files_are_world_readable_and_keep_the_exec_bit(
    code_dir: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "out"
    dest.mkdir()
    old = os.umask(0o077)  # a strict umask must not leak into what sandboxes read
    try:
        bundle.unpack(bundle.pack_dir(code_dir), dest)
    finally:
        os.umask(old)
    assert (dest / "app.py").read_text().startswith("def handler")
    assert stat.S_IMODE((dest / "app.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "pkg").stat().st_mode) == 0o755


def test_unpacking_a_zip_with_directory_entries(tmp_path: Path) -> None:
    data = make_zip([("lib/", b""), ("lib/mod.py", b"y = 2\n"), ("deep/er/x.py", b"")])
    dest = tmp_path / "out"
    dest.mkdir()
    bundle.unpack(data, dest)
    assert (dest / "lib" / "mod.py").read_text() == "y = 2\n"
    assert (dest / "deep" / "er" / "x.py").exists()


def test_unpacking_refuses_a_file_that_shadows_a_directory(tmp_path: Path) -> None:
    data = make_zip([("lib", b"a file"), ("lib/mod.py", b"")])
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CodeBundleError, match="cannot unpack"):
        bundle.unpack(data, dest)


@pytest.mark.slow
def test_a_real_zip_bomb_over_250_mb_is_refused_without_inflating(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("bomb.bin", "w", force_zip64=True) as sink:
            block = bytes(1024 * 1024)
            for _ in range(bundle.MAX_UNPACKED_BYTES // len(block) + 1):
                sink.write(block)
    data = buffer.getvalue()
    assert len(data) < 1024 * 1024  # 251 MB of zeros in well under 1 MB
    dest = tmp_path / "out"
    dest.mkdir()
    with pytest.raises(CodeBundleError, match="250 MB"):
        bundle.unpack(data, dest)
    assert list(dest.iterdir()) == []
