"""`warren --help` lists every command without importing their modules (or pika and redis)."""

from __future__ import annotations

import importlib
import subprocess
import sys

from warren.cli import COMMANDS

MODULES = ("local", "function", "alias", "concurrency", "invoke", "logs", "status", "usage",
           "gateway", "mapping", "topic", "process")


def test_the_table_names_every_command_of_every_module_and_nothing_else() -> None:
    listed = {name: (module, attr) for name, (module, attr, _help) in COMMANDS.items()}
    found = {}
    for module_name in MODULES:
        module = importlib.import_module(f"warren.cli.{module_name}")
        for command in module.COMMANDS:
            attr = next(a for a, v in vars(module).items() if v is command)
            found[command.name] = (module_name, attr)
    assert found == listed


def test_help_imports_no_room_and_no_client_library() -> None:
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from warren.cli import cli\n"
        "out = CliRunner().invoke(cli, ['--help']).output\n"
        "heavy = [m for m in ('redis', 'pika', 'orjson', 'router', 'workers', 'sandbox',"
        " 'broker_adapters', 'gateway', 'warren.client') if m in sys.modules]\n"
        "print(heavy, 'invoke' in out and 'cost' in out)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[] True"
