"""Named plug-ins of one kind (backends, therapist kinds, judges, probe families, export
formats), looked up by name instead of chosen by if/elif chains.

An entry is registered either as the object itself or as a `"module:attribute"` string
that is imported on first use, so heavy backends (llama.cpp, torch) cost nothing until a
spec names them, and `import therapygym` stays fast. Third-party packages add entries
through the entry-point group `therapygym.<kind>` (e.g. `therapygym.backends`): each entry
point's name is the registered name and its value the `module:attribute` to load, read
the first time the registry is asked for a name it does not know.

Like the records, this module imports nothing of ours but errors, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from importlib import import_module
from importlib.metadata import entry_points
from typing import Any, Generic, TypeVar

from therapygym.errors import TherapygymError

T = TypeVar("T")


def load_target(path: str) -> Any:
    """The object a `"module:attribute"` path names (the module itself without `:attribute`);
    the one place a lazy registration is imported, whether by a registry or by an entry
    (a backend's model class) that names its own heavy part lazily."""
    module, _, attribute = path.partition(":")
    loaded = import_module(module)
    return getattr(loaded, attribute) if attribute else loaded


class UnknownEntryError(TherapygymError):
    """A name that no registry entry (built in or from an installed plug-in) answers to."""


class Registry(Generic[T]):
    """Entries of one kind by name; values are objects or lazy `"module:attribute"` paths."""

    def __init__(self, kind: str, *, group: str | None = None) -> None:
        self.kind = kind  # how errors name it ("backend", "probe family", ...)
        self.group = group  # the entry-point group plug-ins register under
        self._entries: dict[str, T | str] = {}
        self._plugins_loaded = group is None

    def register(self, name: str, target: T | str) -> None:
        """Add `name`; a string target is a `module:attribute` path imported on first use."""
        if name in self._entries:
            raise ValueError(f"{self.kind} '{name}' is registered twice")
        self._entries[name] = target

    def __call__(self, name: str) -> Callable[[T], T]:
        """Decorator form: `@registry("name")` above a class or function registers it."""

        def add(target: T) -> T:
            self.register(name, target)
            return target

        return add

    def _load_plugins(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for ep in entry_points(group=self.group or ""):
            if ep.name not in self._entries:
                self._entries[ep.name] = ep.value

    def get(self, name: str) -> T:
        """The entry for `name`, imported now if it was registered lazily."""
        if name not in self._entries:
            self._load_plugins()
        if name not in self._entries:
            known = ", ".join(self.names()) or "none"
            raise UnknownEntryError(f"unknown {self.kind} '{name}' (known: {known})")
        target = self._entries[name]
        if isinstance(target, str):
            target = load_target(target)
            self._entries[name] = target
        return target  # type: ignore[return-value]

    def names(self) -> list[str]:
        """Every registered name (built in first, then plug-ins), without importing any."""
        self._load_plugins()
        return list(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load_plugins()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
