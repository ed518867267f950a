"""Runtime names in the core: the known list, and the handler rule of each family."""

from __future__ import annotations

import pytest

from warren.errors import InvalidParameter
from warren.function import check_handler, check_runtime


@pytest.mark.parametrize(
    "runtime",
    ["python3.11", "python3.13", "nodejs20.x", "nodejs22.x", "provided", "provided.al2023"],
)
def test_known_runtimes_are_accepted(runtime):
    assert check_runtime(runtime) == runtime


@pytest.mark.parametrize("runtime", ["python3.99", "python2.7", "ruby3.2", "nodejs4.3", "java21"])
def test_unknown_runtimes_are_refused_with_the_list(runtime):
    with pytest.raises(InvalidParameter) as refused:
        check_runtime(runtime)
    message = str(refused.value)
    assert "python3.8-python3.14" in message and "nodejs22.x" in message
    assert "provided.al2023" in message


def test_a_provided_bootstrap_may_read_any_handler_but_python_and_node_need_file_dot_name():
    assert check_handler("bootstrap", "provided.al2023") == "bootstrap"
    assert check_handler("my-fn::main", "provided") == "my-fn::main"
    with pytest.raises(InvalidParameter):
        check_handler("has space", "provided")
    with pytest.raises(InvalidParameter):
        check_handler("bootstrap", "nodejs20.x")
    assert check_handler("src/index.handler", "nodejs20.x") == "src/index.handler"
    with pytest.raises(InvalidParameter):
        check_handler("bootstrap", "python3.11")
