"""The `therapygym` command line (`app.py`), one module per command group.

Commands parse options into a config, call the library and print through
`report.terminal`; they hold no logic of their own.
"""
