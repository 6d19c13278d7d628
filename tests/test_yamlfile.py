"""`read_yaml` parses through libyaml when it can, and must answer exactly as PyYAML's
pure-Python parser did: the same data for every file we ship, the same refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from therapygym.errors import ConfigError
from therapygym.yamlfile import read_yaml

PACKAGE = Path(__file__).parents[1] / "src" / "therapygym"
SHIPPED = sorted(PACKAGE.rglob("*.yaml"))


def test_the_package_ships_yaml_files() -> None:
    assert len(SHIPPED) > 50  # the profile library alone has more


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_shipped_file_reads_as_the_python_parser_reads_it(path: Path) -> None:
    assert read_yaml(path, "file", ConfigError) == yaml.safe_load(path.read_text("utf-8"))


def test_nesting_libyaml_would_take_is_refused_as_before(tmp_path: Path) -> None:
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 600 + "]" * 600 + "\n")  # libyaml takes it, Python cannot
    assert yaml.load(deep.read_text(), Loader=yaml.CSafeLoader) is not None
    with pytest.raises(ConfigError, match="nested too deeply"):
        read_yaml(deep, "file", ConfigError)


def test_nesting_within_the_python_parser_s_reach_still_reads(tmp_path: Path) -> None:
    nested = tmp_path / "nested.yaml"
    nested.write_text("a: " + "[" * 100 + "1" + "]" * 100 + "\n")  # deeper than libyaml's share
    data = read_yaml(nested, "file", ConfigError)["a"]
    for _ in range(99):
        data = data[0]
    assert data == [1]


def test_an_alias_that_contains_itself_is_refused_as_before(tmp_path: Path) -> None:
    loop = tmp_path / "loop.yaml"
    loop.write_text("a: &x [1, *x]\n")
    with pytest.raises(ConfigError, match="through YAML aliases"):
        read_yaml(loop, "file", ConfigError)
