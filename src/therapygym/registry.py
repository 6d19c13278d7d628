"""Named plug-ins of one kind (backends, therapist kinds, judges, probe families, export
formats), looked up by name instead of chosen by if/elif chains.

An entry is registered either as the object itself or as a `"module:attribute"` string
that is imported on first use, so heavy backends (llama.cpp, torch) cost nothing until a
spec names them, and `import therapygym` stays fast. Third-party packages add entries
through the entry-point group `therapygym.<kind>` (e.g. `therapygym.backends`): each entry
point's name is the registered name and its value the `module:attribute` to load, read
the first time the registry is asked for a name it does not know. Plug-ins that add data
rather than code (rubrics, patient libraries) name a folder instead: `data_folders`.

Like the records, this module imports nothing of ours but errors, so every layer may use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
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


class PluginError(TherapygymError):
    """An installed plug-in whose entry point cannot be used as it is declared."""


@dataclass(frozen=True)
class DataFolder:
    """A folder of YAML files an installed plug-in adds (rubrics, patient profiles)."""

    name: str  # the entry point's name
    source: str  # the distribution that declares it, for errors
    path: Path


def data_folders(group: str) -> list[DataFolder]:
    """The folders installed plug-ins add under entry-point group `group`, by entry name.

    Data is not code, so these entry points name a folder rather than an object: a
    package (`mypkg.rubrics`: its own folder, shipped as package data) or a
    `module:attribute` holding a path. A plug-in declared wrongly is an error naming it
    and its distribution, not a silently missing folder."""
    folders = []
    for ep in sorted(entry_points(group=group), key=lambda e: e.name):
        source = ep.dist.name if ep.dist is not None else "an unknown distribution"
        where = f"plug-in '{ep.name}' ({source}, entry point group {group})"
        try:
            target = load_target(ep.value)
        except (ImportError, AttributeError) as err:
            raise PluginError(f"{where}: cannot load {ep.value}: {err}") from None
        if isinstance(target, ModuleType):
            locations = target.__spec__.submodule_search_locations if target.__spec__ else None
            if not locations:
                raise PluginError(f"{where}: {ep.value} is a module; name a package (a folder)")
            path = Path(next(iter(locations)))
        else:
            path = Path(str(target))
        if not path.is_dir():
            raise PluginError(f"{where}: {ep.value} gives {path}, which is not a folder")
        folders.append(DataFolder(ep.name, source, path))
    return folders


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
