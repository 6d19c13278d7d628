"""Plug-ins: a separate package adds a backend, a probe family, a rubric and a patient
library through entry points, and therapygym uses them with no change of its own.

The example plug-in (tests/fixtures/plugin_pkg) is really built and installed, by pip,
into a folder of its own, and therapygym runs in a child process with that folder on
PYTHONPATH, as a user's installed plug-in would be found. The refusals (clashing ids and
versions, a plug-in declared wrongly) use a dist-info folder written here: the same
metadata pip writes, found by the same `importlib.metadata` lookup.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from judges.scripted import judge_replier

from therapygym.errors import ConfigError
from therapygym.judges.rubric import _plugin_rubrics, builtin_versions, rubric_by_ref
from therapygym.patients.library import ProfileError, library_dir, load_profiles
from therapygym.registry import PluginError

FIXTURE = Path(__file__).parent / "fixtures" / "plugin_pkg"
PLUGIN_DATA = FIXTURE / "src" / "tg_example_plugin"


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plug-in, built from a copy of its source (a build writes into the
    source tree) and installed with pip into a folder of its own: no network, no index."""
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(FIXTURE, root / "src")
    site = root / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(site), str(source)],
        check=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    return site


def tg(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`therapygym ARGS` in a child process that finds the plug-in installed in `site`."""
    env = {**os.environ, "PYTHONPATH": str(site), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "therapygym", *args],
        capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
    )  # fmt: skip


def test_models_list_shows_the_plugin_backend_with_its_status(
    plugin_site: Path, tmp_path: Path
) -> None:
    listed = tg(plugin_site, tmp_path, "models", "list")
    assert listed.returncode == 0, listed.stderr
    assert "canned:<name>" in listed.stdout and "ready (no server needed)" in listed.stdout
    assert listed.stdout.rstrip().endswith(", canned")  # `backends:` line, after the built-ins


def test_patients_list_shows_the_plugin_library_beside_the_shipped_one(
    plugin_site: Path, tmp_path: Path
) -> None:
    listed = tg(plugin_site, tmp_path, "patients", "list")
    assert listed.returncode == 0, listed.stderr
    assert "xmp-01-sam" in listed.stdout and "dep-01-maya" in listed.stdout


def test_a_run_and_its_judging_use_the_plugin_backend_patient_and_rubric(
    plugin_site: Path, tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """The plug-in's backend plays therapist and patient, its profile is chosen by a
    selector like any other, and its rubric version judges the run by ref."""
    store = ("--store", str(tmp_path / "s.sqlite"), "--no-cache")
    ran = tg(plugin_site, tmp_path, "run", "--therapist", "canned:calm", "--patient-model",
             "canned:client", "--patients", "xmp-*+condition:depression", "--max-turns", "2",
             "--run-id", "r", *store)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    judge = server_spec(openai_server(judge_replier(score=4)))
    judged = tg(plugin_site, tmp_path, "judge", "r", "--judge", judge,
                "--rubric", "response@1.0-example", *store)  # fmt: skip
    assert judged.returncode == 0, judged.stderr
    for content in ("transcripts", "scores"):
        out = tmp_path / f"{content}.jsonl"
        exported = tg(plugin_site, tmp_path, "runs", "export", "r", "--content", content,
                      "-o", str(out), "--store", store[1])  # fmt: skip
        assert exported.returncode == 0, exported.stderr
    (session,) = [json.loads(line) for line in (tmp_path / "transcripts.jsonl").open()]
    assert session["profile_id"] == "xmp-01-sam" and session["status"] == "completed"
    therapist = [t["text"] for t in session["turns"] if t["speaker"] == "therapist"]
    assert therapist and all(t.endswith("(calm)") for t in therapist)
    scores = [json.loads(line) for line in (tmp_path / "scores.jsonl").open()]
    assert {(s["rubric_id"], s["rubric_version"]) for s in scores} == {("response", "1.0-example")}


def test_the_plugin_probe_family_is_listed_and_runs(plugin_site: Path, tmp_path: Path) -> None:
    unknown = tg(plugin_site, tmp_path, "probe", "nosuch", "--therapist", "canned:calm")
    assert unknown.returncode == 2 and "judge or opening" in unknown.stderr
    probed = tg(plugin_site, tmp_path, "probe", "opening", "--therapist", "canned:calm",
                "--store", str(tmp_path / "s.sqlite"), "--no-cache")  # fmt: skip
    assert probed.returncode == 0, probed.stderr
    assert "Opens with a question" in probed.stdout
    assert "canned:calm │ yes" in probed.stdout


def test_without_the_plugin_its_parts_are_unknown(tmp_path: Path) -> None:
    """The control: the same commands without the plug-in on the path do not know it, so
    the tests above see what the plug-in adds."""
    assert "xmp-01-sam" not in {p.id for p in load_profiles()}
    with pytest.raises(ConfigError, match=r"no such version; there are response@1.0$"):
        rubric_by_ref("response@1.0-example")


# --- refusals: a plug-in folder declared here, found as an installed one is ---------------


@pytest.fixture
def declare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`declare(group, package, files)`: an installed distribution (a dist-info folder on
    sys.path) whose entry point in `group` names `package`, a folder holding `files`."""
    site = tmp_path / "site"
    monkeypatch.syspath_prepend(str(site))
    _plugin_rubrics.cache_clear()

    def add(group: str, package: str, files: dict[str, str], value: str | None = None) -> None:
        folder = site / package
        folder.mkdir(parents=True)
        (folder / "__init__.py").write_text("")
        for name, text in files.items():
            (folder / name).write_text(text)
        meta = site / f"{package}-0.1.dist-info"
        meta.mkdir()
        (meta / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: 0.1\n")
        (meta / "entry_points.txt").write_text(f"[{group}]\nexample = {value or package}\n")

    yield add
    _plugin_rubrics.cache_clear()


def _rubric(version: str, rubric_id: str = "response") -> str:
    text = (PLUGIN_DATA / "rubrics" / "response-1.0-example.yaml").read_text()
    text = text.replace('version: "1.0-example"', f'version: "{version}"')
    return text.replace("id: response", f"id: {rubric_id}", 1)


def test_a_plugin_rubric_version_joins_the_versions_there_are(declare: Any) -> None:
    declare("therapygym.rubrics", "tgp_rubric_ok", {"r.yaml": _rubric("1.1-lab")})
    assert builtin_versions("response") == ["1.0", "1.1-lab"]
    assert rubric_by_ref("response@1.1-lab").version == "1.1-lab"
    assert rubric_by_ref("response").version == "1.0"  # the current one stays the shipped one


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ({"r.yaml": _rubric("1.0")}, r"is response@1\.0, which therapygym ships: .* 1\.0-example"),
        ({"r.yaml": _rubric("1.1", "resp")}, r"field 'id' must be 'response'"),
        (
            {"a.yaml": _rubric("1.1"), "b.yaml": _rubric("1.1")},
            r"response@1\.1 is added twice: by .*a\.yaml and by .*b\.yaml",
        ),
        ({}, r"rubric plug-in 'example' \(tgp_rubric_\d\): .* holds no rubric files"),
    ],
)
def test_a_plugin_rubric_that_would_shadow_or_clash_is_refused(
    declare: Any, files: dict[str, str], error: str, request: pytest.FixtureRequest
) -> None:
    package = f"tgp_rubric_{request.node.callspec.indices['files']}"
    declare("therapygym.rubrics", package, files)
    with pytest.raises(ConfigError, match=error):
        rubric_by_ref("response@1.1")


def test_a_plugin_profile_with_a_shipped_id_is_refused_naming_both_files(declare: Any) -> None:
    maya = (library_dir() / "dep-01-maya.yaml").read_text()
    declare("therapygym.patients", "tgp_patients_clash", {"dep-01-maya.yaml": maya})
    with pytest.raises(ProfileError) as err:
        load_profiles()
    message = str(err.value)
    assert "patient id 'dep-01-maya' is in two libraries" in message
    assert str(library_dir() / "dep-01-maya.yaml") in message
    assert "tgp_patients_clash/dep-01-maya.yaml (plug-in 'example' (tgp_patients_clash)" in message


def test_a_plugin_that_names_no_folder_is_refused_naming_the_plugin(declare: Any) -> None:
    declare("therapygym.patients", "tgp_bad_value", {}, value="tgp_bad_value:MISSING")
    with pytest.raises(PluginError, match=r"plug-in 'example' \(tgp_bad_value, entry point group "
                       r"therapygym\.patients\): cannot load tgp_bad_value:MISSING"):  # fmt: skip
        load_profiles()
