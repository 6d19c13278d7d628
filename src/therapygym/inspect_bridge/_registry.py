"""What Inspect's `inspect_ai` entry point names: importing it registers our tasks, which
Inspect then addresses as `therapygym/<task>` (`inspect eval therapygym/ctrs_session`)."""

from therapygym.inspect_bridge.tasks import ctrs_session

__all__ = ["ctrs_session"]
