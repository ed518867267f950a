"""A function's layers merged into one directory of the code cache: what its sandbox sees as /opt.

Layers are unpacked like code bundles (each once per worker, verified against its sha256), then
laid over one another in the function's order, a later layer's file replacing an earlier one's
at the same path, as Lambda extracts them into /opt. Files are hard links into the unpacked
layers (same cache, same file system), so a merge costs directory entries, not copies; they are
owned by the worker and not writable by the sandbox uids.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path


def opt_name(shas: Sequence[str]) -> str:
    """The merged directory's name: one per ordered list of layer bundles."""
    return "opt-" + hashlib.sha256("\n".join(shas).encode()).hexdigest()


def merge(layers: Sequence[Path], dest: Path) -> None:
    """Lay `layers` (unpacked bundle directories) over each other into the empty `dest`."""
    for layer in layers:
        for dirpath, dirnames, filenames in os.walk(layer, followlinks=False):
            relative = Path(dirpath).relative_to(layer)
            target_dir = dest / relative
            for name in sorted(dirnames):
                target = target_dir / name
                if target.is_symlink() or (target.exists() and not target.is_dir()):
                    target.unlink()  # an earlier layer's file where this one has a directory
                if not target.exists():
                    target.mkdir(mode=0o755)
                    os.chmod(target, 0o755)
            for name in sorted(filenames):
                target = target_dir / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)  # an earlier layer's directory where this has a file
                elif target.exists() or target.is_symlink():
                    target.unlink()
                source = Path(dirpath, name)
                try:
                    os.link(source, target, follow_symlinks=False)
                except OSError:  # a cache on a file system without hard links
                    shutil.copy2(source, target, follow_symlinks=False)
