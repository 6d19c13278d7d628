"""The import contracts of pyproject.toml hold, and each of them fails when broken.

`make test` runs `lint-imports`; these tests run it too, on the package as it is and on a
copy with one forbidden import planted per contract, so a contract that could never fail
(a typo in a module name, a layer that names nothing) is caught.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = Path(sys.executable).with_name("lint-imports")

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="pip install -e '.[dev]'")

# contract id -> (module file to plant in, the forbidden import)
PLANTS = {
    "layers": ("store.py", "import therapygym.runner"),
    "records-ground-floor": ("records.py", "import therapygym.yamlfile"),
    "models-alone": ("models/cache.py", "import therapygym.session"),
    "judges-no-store": ("judges/panel.py", "import therapygym.store"),
    "report-reads-only": ("report/charts.py", "import therapygym.models"),
    "nothing-imports-cli": ("testing/openai_server.py", "import therapygym.cli"),
}


def lint(src: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [str(LINT), "--no-cache", "--config", str(cwd / "pyproject.toml")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_contracts_hold() -> None:
    done = lint(ROOT / "src", ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_every_contract_is_planted() -> None:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    ids = {line.split('"')[1] for line in text.splitlines() if line.startswith("id = ")}
    assert ids == set(PLANTS)


def lint_planted(tmp_path: Path, module: str, line: str) -> subprocess.CompletedProcess[str]:
    """Lint a copy of the package with `line` appended to `module`."""
    shutil.copytree(ROOT / "src" / "therapygym", tmp_path / "src" / "therapygym")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    target = tmp_path / "src" / "therapygym" / module
    target.write_text(target.read_text(encoding="utf-8") + f"\n{line}  # planted\n")
    return lint(tmp_path / "src", tmp_path)


@pytest.mark.parametrize("contract", sorted(PLANTS))
def test_a_contract_fails_when_broken(contract: str, tmp_path: Path) -> None:
    done = lint_planted(tmp_path, *PLANTS[contract])
    assert done.returncode == 1, done.stdout
    assert f"{_names()[contract]} BROKEN" in done.stdout, done.stdout


def test_the_scorecard_section_stays_apart_from_the_scorecard_runner(tmp_path: Path) -> None:
    """The report renders a scorecard through probes/render.py; if that module reached the
    runner again (as it did before scorecard_data.py was split out), the report would too."""
    done = lint_planted(tmp_path, "probes/render.py", "import therapygym.probes.scorecard")
    assert done.returncode == 1, done.stdout
    assert f"{_names()['report-reads-only']} BROKEN" in done.stdout, done.stdout


def _names() -> dict[str, str]:
    """Contract id -> name, as pyproject.toml declares them."""
    import tomllib

    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["id"]: c["name"] for c in config["tool"]["importlinter"]["contracts"]}
