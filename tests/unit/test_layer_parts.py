"""Layers without services: references, the /opt merge, and the paths each runtime is given."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sandbox.layers import bootstrap, layer_environment
from warren.errors import InvalidParameter
from warren.layer import check_refs, parse_ref
from workers.optdir import merge, opt_name


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_layer_references_are_names_with_versions_or_arns() -> None:
    assert parse_ref("deps:3") == ("deps", 3)
    assert parse_ref("arn:aws:lambda:eu-west-1:123456789012:layer:deps:12") == ("deps", 12)
    for bad in ("deps", "deps:0", "deps:x", ":1", "a b:1", "arn:aws:lambda:x:1:layer:deps:1"):
        with pytest.raises(InvalidParameter):
            parse_ref(bad)
    with pytest.raises(InvalidParameter, match="at most 5"):
        check_refs([f"l{i}:1" for i in range(6)])


def test_later_layers_win_over_earlier_ones_file_for_file(tmp_path: Path) -> None:
    first = write(tmp_path / "a", {"python/m.py": "a", "bin/tool": "a", "only_a": "a",
                                   "clash/inner": "a dir in a", "file_then_dir": "a file"})
    second = write(tmp_path / "b", {"python/m.py": "b", "only_b": "b", "clash": "a file in b",
                                    "file_then_dir/x": "b"})
    dest = tmp_path / "opt"
    dest.mkdir()
    merge([first, second], dest)
    assert (dest / "python/m.py").read_text() == "b"
    assert (dest / "bin/tool").read_text() == "a"
    assert (dest / "only_a").read_text() == "a" and (dest / "only_b").read_text() == "b"
    assert (dest / "clash").read_text() == "a file in b"
    assert (dest / "file_then_dir/x").read_text() == "b"
    # Hard links into the unpacked layers: nothing copied, and the layers are left as they were
    assert os.stat(dest / "only_a").st_ino == os.stat(first / "only_a").st_ino
    assert (first / "python/m.py").read_text() == "a"


def test_the_merged_directory_is_named_by_the_ordered_layers() -> None:
    assert opt_name(["a" * 64, "b" * 64]) != opt_name(["b" * 64, "a" * 64])
    assert opt_name(["a" * 64]) == opt_name(["a" * 64])


def test_each_runtime_is_pointed_at_the_layer_paths() -> None:
    base = {"PATH": "/code/bin:/usr/bin"}
    py = dict(base)
    layer_environment(py, "/c/opt-x", "python3.11", "/code")
    assert py["PYTHONPATH"].split(":") == [
        "/code", "/c/opt-x/python/lib/python3.11/site-packages", "/c/opt-x/python"]
    assert py["PATH"].endswith(":/c/opt-x/bin") and py["LD_LIBRARY_PATH"].endswith("/opt-x/lib")
    node = dict(base)
    layer_environment(node, "/c/opt-x", "nodejs20.x", "/code")
    assert node["NODE_PATH"].split(":")[-1] == "/c/opt-x/nodejs/node_modules"
    assert "/c/opt-x/nodejs/node20/node_modules" in node["NODE_PATH"]


def test_a_provided_bootstrap_is_the_codes_own_before_a_layers(tmp_path: Path) -> None:
    code, opt = tmp_path / "code", write(tmp_path / "opt", {"bootstrap": "#!/bin/sh\n"})
    code.mkdir()
    assert bootstrap(str(code), str(opt)) == str(opt / "bootstrap")
    write(code, {"bootstrap": "#!/bin/sh\n"})
    assert bootstrap(str(code), str(opt)) == str(code / "bootstrap")
    assert bootstrap(str(code), None) == str(code / "bootstrap")
