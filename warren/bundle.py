"""Code bundles as zip bytes: deterministic packing of a directory, checking, and safe unpacking."""

from __future__ import annotations

import io
import os
import stat
import zipfile
from pathlib import Path, PurePosixPath

from warren.errors import CodeBundleError

MAX_ZIPPED_BYTES = 50 * 1024 * 1024
MAX_UNPACKED_BYTES = 250 * 1024 * 1024
MAX_ENTRIES = 20_000
# Names that change whenever code runs locally; leaving them out keeps the sha256 stable.
SKIPPED_NAMES = frozenset({"__pycache__", ".git", ".hg", ".svn", ".mypy_cache", ".pytest_cache"})
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1024 * 1024


def read(path: Path) -> bytes:
    """The zip bytes for `path`: a directory packed deterministically, or a zip file as it is."""
    if path.is_dir():
        data = pack_dir(path)
    elif path.is_file():
        if path.stat().st_size > MAX_ZIPPED_BYTES:
            raise CodeBundleError(
                f"{path} is {path.stat().st_size} bytes: a code zip may be at most 50 MB"
            )
        data = path.read_bytes()
        if not zipfile.is_zipfile(io.BytesIO(data)):
            raise CodeBundleError(f"{path} is not a zip file: pass a directory or a .zip")
    elif path.exists():
        raise CodeBundleError(f"{path} is neither a directory nor a zip file")
    else:
        raise CodeBundleError(f"code path {path} does not exist")
    verify(data)
    return data


def pack_dir(root: Path) -> bytes:
    """Zip a directory so that the same tree always gives the same bytes (sorted, fixed times)."""
    files: list[tuple[str, Path, bool]] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_NAMES)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            full = Path(dirpath, name)
            info = full.lstat()
            relative = full.relative_to(root).as_posix()
            if stat.S_ISLNK(info.st_mode):
                raise CodeBundleError(f"{relative} is a symlink: symlinks are not allowed in code")
            if not stat.S_ISREG(info.st_mode):
                raise CodeBundleError(f"{relative} is not a regular file")
            total += info.st_size
            if total > MAX_UNPACKED_BYTES:
                raise CodeBundleError(f"{root} holds more than 250 MB: code may be at most 250 MB")
            files.append((relative, full, bool(info.st_mode & 0o111)))
        for name in dirnames:
            if Path(dirpath, name).is_symlink():
                rel = Path(dirpath, name).relative_to(root).as_posix()
                raise CodeBundleError(f"{rel} is a symlink: symlinks are not allowed in code")
    if len(files) > MAX_ENTRIES:
        raise CodeBundleError(f"{root} holds {len(files)} files: at most {MAX_ENTRIES} are allowed")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for relative, full, executable in sorted(files):
            entry = zipfile.ZipInfo(relative, date_time=_FIXED_TIME)
            entry.create_system = 3  # unix, so that the mode below is honoured
            entry.external_attr = (stat.S_IFREG | (0o755 if executable else 0o644)) << 16
            entry.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(entry, full.read_bytes())
    data = buffer.getvalue()
    if len(data) > MAX_ZIPPED_BYTES:
        raise CodeBundleError(f"{root} zips to {len(data)} bytes: code may be at most 50 MB zipped")
    return data


def _open(data: bytes) -> zipfile.ZipFile:
    if len(data) > MAX_ZIPPED_BYTES:
        raise CodeBundleError(f"code bundle is {len(data)} bytes: at most 50 MB zipped")
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise CodeBundleError(f"code bundle is not a valid zip: {exc}") from None


def safe_parts(name: str) -> tuple[str, ...]:
    """The path components of a zip entry, or CodeBundleError if it could escape its directory."""
    if not name or "\x00" in name:
        raise CodeBundleError(f"zip entry {name!r} has an empty or NUL-containing name")
    if "\\" in name:
        raise CodeBundleError(f"zip entry {name!r} uses '\\': zip paths must use '/'")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise CodeBundleError(f"zip entry {name!r} is an absolute path")
    parts = tuple(p for p in PurePosixPath(name).parts if p != ".")
    if ".." in parts:
        raise CodeBundleError(f"zip entry {name!r} escapes the bundle with '..' (zip slip)")
    if not parts:
        raise CodeBundleError(f"zip entry {name!r} has no usable path")
    return parts


def _check_entries(archive: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
    entries = archive.infolist()
    if len(entries) > MAX_ENTRIES:
        raise CodeBundleError(f"zip holds {len(entries)} entries: at most {MAX_ENTRIES}")
    seen: set[tuple[str, ...]] = set()
    declared = 0
    for entry in entries:
        parts = safe_parts(entry.filename)
        mode = entry.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise CodeBundleError(f"zip entry {entry.filename!r} is a symlink: not allowed")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise CodeBundleError(f"zip entry {entry.filename!r} is not a file or directory")
        if entry.flag_bits & 0x1:
            raise CodeBundleError(f"zip entry {entry.filename!r} is encrypted: not supported")
        if parts in seen:
            raise CodeBundleError(f"zip entry {entry.filename!r} appears twice")
        seen.add(parts)
        declared += entry.file_size
        if declared > MAX_UNPACKED_BYTES:
            raise CodeBundleError("zip unpacks to more than 250 MB: code may be at most 250 MB")
    return entries


def _stream(archive: zipfile.ZipFile, entry: zipfile.ZipInfo, sink: io.RawIOBase | None) -> int:
    """Decompress one entry (into `sink` if given), never past its declared size."""
    written = 0
    try:
        with archive.open(entry) as source:
            while chunk := source.read(_CHUNK):
                written += len(chunk)
                if written > entry.file_size:
                    raise CodeBundleError(f"zip entry {entry.filename!r} is larger than declared")
                if sink is not None:
                    sink.write(chunk)
    except (zipfile.BadZipFile, NotImplementedError, EOFError, OSError, ValueError) as exc:
        raise CodeBundleError(f"zip entry {entry.filename!r} cannot be read: {exc}") from None
    return written


def verify(data: bytes) -> None:
    """Check a bundle fully (names, kinds, sizes, CRCs) without writing anything."""
    with _open(data) as archive:
        total = 0
        for entry in _check_entries(archive):
            if not entry.is_dir():
                total += _stream(archive, entry, None)
                if total > MAX_UNPACKED_BYTES:
                    raise CodeBundleError("zip unpacks to more than 250 MB")


def unpack(data: bytes, dest: Path) -> None:
    """Extract a bundle into the empty directory `dest`: world-readable, nothing outside it."""
    with _open(data) as archive:
        total = 0
        for entry in _check_entries(archive):
            target = dest.joinpath(*safe_parts(entry.filename))
            try:
                if entry.is_dir():
                    target.mkdir(mode=0o755, parents=True, exist_ok=True)
                    os.chmod(target, 0o755)
                    continue
                _make_parents(dest, target.parent)
                executable = (entry.external_attr >> 16) & 0o111
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as sink:
                    total += _stream(archive, entry, sink)  # type: ignore[arg-type]
                os.chmod(target, 0o755 if executable else 0o644)
            except OSError as exc:
                raise CodeBundleError(f"cannot unpack {entry.filename!r}: {exc}") from None
            if total > MAX_UNPACKED_BYTES:
                raise CodeBundleError("zip unpacks to more than 250 MB")


def _make_parents(dest: Path, parent: Path) -> None:
    missing: list[Path] = []
    while parent != dest and not parent.is_dir():
        missing.append(parent)
        parent = parent.parent
    for directory in reversed(missing):
        directory.mkdir(mode=0o755)
        os.chmod(directory, 0o755)
