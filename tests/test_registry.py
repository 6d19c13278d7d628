"""The generic registry: lazy entries, one-line errors, entry-point plug-ins."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint

import pytest

from therapygym.registry import Registry, UnknownEntryError


def test_a_path_is_imported_on_first_use_only() -> None:
    reg: Registry[object] = Registry("widget")
    reg.register("json", "json:dumps")
    reg.register("colorsys", "colorsys")
    sys.modules.pop("colorsys", None)
    assert reg.names() == ["json", "colorsys"] and "colorsys" not in sys.modules
    assert reg.get("json")({"a": 1}) == '{"a": 1}'
    assert reg.get("colorsys") is sys.modules["colorsys"]  # a module path without :attribute


def test_unknown_names_list_the_known_ones_and_names_are_unique() -> None:
    reg: Registry[int] = Registry("widget")

    @reg("small")
    def small() -> int:
        return 1

    reg.register("large", 2)  # type: ignore[arg-type]
    with pytest.raises(UnknownEntryError, match=r"^unknown widget 'huge' \(known: small, large\)$"):
        reg.get("huge")
    with pytest.raises(ValueError, match="widget 'large' is registered twice"):
        reg.register("large", 3)  # type: ignore[arg-type]
    assert reg.get("small") is small and "large" in reg and "huge" not in reg
    assert Registry("widget").names() == [] and "none" in _error(Registry("widget"))


def test_plug_ins_come_from_the_entry_point_group(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def entry_points(*, group: str) -> list[EntryPoint]:
        asked.append(group)
        return [
            EntryPoint("dumps", "json:dumps", group),
            EntryPoint("builtin", "json:loads", group),  # a built-in name is not replaced
        ]

    monkeypatch.setattr("therapygym.registry.entry_points", entry_points)
    reg: Registry[object] = Registry("widget", group="therapygym.widgets")
    reg.register("builtin", "json:JSONDecoder")
    reg.get("builtin")
    assert asked == []  # a known name never reads the installed packages
    assert reg.names() == ["builtin", "dumps"] and asked == ["therapygym.widgets"]
    assert reg.get("dumps")([1]) == "[1]" and asked == ["therapygym.widgets"]  # read once


def _error(reg: Registry[object]) -> str:
    with pytest.raises(UnknownEntryError) as err:
        reg.get("x")
    return str(err.value)
