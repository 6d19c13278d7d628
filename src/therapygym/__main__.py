"""`python -m therapygym` is the `therapygym` command."""

from therapygym.cli import main

main()
