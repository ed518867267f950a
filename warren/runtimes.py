"""The runtime names Warren knows, and which family (fast path or Runtime API) each belongs to.

Whether a given worker can run one is decided at the worker's edge (sandbox/runtimes.py): the
core only knows the names, so that `function create` can refuse a typo with the list in hand.
"""

from __future__ import annotations

PYTHON = tuple(f"python3.{n}" for n in range(8, 15))
NODE = ("nodejs18.x", "nodejs20.x", "nodejs22.x")
PROVIDED = ("provided", "provided.al2", "provided.al2023")
KNOWN = (*PYTHON, *NODE, *PROVIDED)


def is_python(runtime: str) -> bool:
    return runtime in PYTHON


def is_node(runtime: str) -> bool:
    return runtime in NODE


def is_provided(runtime: str) -> bool:
    return runtime in PROVIDED


def describe(names: tuple[str, ...] | list[str]) -> str:
    """`python3.8-python3.14, nodejs18.x, ...`: a list short enough for an error message."""
    pythons = [n for n in names if is_python(n)]
    rest = [n for n in names if not is_python(n)]
    head = []
    if len(pythons) > 2:
        head.append(f"{pythons[0]}-{pythons[-1]}")
    else:
        head.extend(pythons)
    return ", ".join(head + rest)
