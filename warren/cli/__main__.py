"""`python -m warren.cli` is the `warren` command."""

from warren.cli import main

main()
