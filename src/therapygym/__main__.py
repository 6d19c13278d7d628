"""`python -m therapygym` is the `therapygym` command."""

from therapygym.cli.app import main

main()
