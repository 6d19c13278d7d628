"""The terminal every command prints to (results on stdout, failures on stderr)."""

from therapygym.report.terminal import Terminal

term = Terminal()
