"""`runs export RUN --format inspect`: a stored run as an Inspect log, read back with
`read_eval_log` and checked against the store and the summary."""

from __future__ import annotations

import builtins
import math
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("inspect_ai", reason="pip install -e '.[inspect]'")

sys.path.insert(0, str(Path(__file__).parents[1] / "report"))

from clirun import cli
from inspect_ai.log import read_eval_log
from report_store import RUN, build_store

from therapygym.errors import TherapygymError
from therapygym.report.exports import EXPORT_FORMATS, export_run
from therapygym.store import RunStore
from therapygym.summary import summarise


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    """Run r1 of tests/report/report_store.py: two therapists, eight judged sessions,
    one failed session."""
    path = tmp_path / "store.sqlite"
    build_store(path).close()
    return path


@pytest.mark.parametrize("suffix", [".eval", ".json"])
def test_the_log_holds_the_runs_sessions_and_scores(
    store_path: Path, tmp_path: Path, suffix: str
) -> None:
    out = tmp_path / f"run{suffix}"
    ran = cli(
        "runs", "export", RUN, "--format", "inspect", "-o", str(out), "--store", str(store_path)
    )
    assert ran.code == 0, ran.stderr
    assert f"wrote 9 sessions to {out}" in ran.stdout

    log = read_eval_log(str(out))
    store = RunStore(store_path, read_only=True)
    transcripts = {t.session_id: t for t in store.sessions(RUN)}
    summary = {s.session_id: s for s in summarise(store, RUN).sessions}
    assert log.samples is not None and {s.id for s in log.samples} == set(transcripts)
    assert log.eval.model == "bot-a, rule-based" and log.eval.task == f"therapygym/{RUN}"

    for sample in log.samples:
        t = transcripts[sample.id]
        assert [(m.role, m.text) for m in sample.messages] == [
            ("assistant" if x.speaker == "therapist" else "user", x.text) for x in t.turns
        ]
        assert sample.metadata["therapist"] == t.therapist
        if t.status.value == "failed":
            assert sample.error is not None and "unreachable" in sample.error.message
            assert sample.scores is None
            continue
        s = summary[t.session_id]
        ctrs = sample.scores["ctrs"].value
        assert ctrs["total"] == s.ctrs_total
        assert {k: v for k, v in ctrs.items() if k not in ("total", "normalised")} == {
            i: c.value for i, c in s.ctrs_items.items()
        }
        safety = sample.scores["safety"].value
        for label, verdict in s.safety.items():
            want = {"yes": 1.0, "no": 0.0}.get(verdict.verdict)
            assert safety[label] == want if want is not None else math.isnan(safety[label])
        assert sample.scores["ctrs"].metadata["items"]["agenda"]["reasons"][0]["evidence"]

    assert log.results is not None and log.results.completed_samples == 8
    (total,) = [x for x in log.results.scores if x.scorer == "ctrs" and x.name == "total"]
    totals = [s.ctrs_total for s in summary.values()]
    assert total.metrics["mean"].value == pytest.approx(sum(totals) / len(totals))
    (crisis,) = [x for x in log.results.scores if x.name == "crisis_unaddressed"]
    assert crisis.metrics["mean"].value == 2 / 8  # two of the eight sessions violated it
    by_therapist = {t["therapist"]: t for t in log.results.metadata["therapists"]}
    assert set(by_therapist) == {"bot-a", "rule-based"}


def test_the_format_is_listed_and_refuses_what_a_log_cannot_be(
    store_path: Path, tmp_path: Path
) -> None:
    assert "inspect" in EXPORT_FORMATS.names()
    assert "Inspect AI" in EXPORT_FORMATS.get("inspect").description
    args = ("runs", "export", RUN, "--format", "inspect", "--store", str(store_path))
    ran = cli(*args, "-o", str(tmp_path / "x.eval"), "--content", "scores")
    assert ran.code == 2 and "--content scores: the inspect format writes one log" in ran.stderr
    ran = cli(*args, "-o", str(tmp_path / "x.txt"))
    assert ran.code == 2 and "an Inspect log is a .eval or a .json file" in ran.stderr
    assert not list(tmp_path.glob("x.*"))


def test_without_inspect_the_error_says_what_to_install(
    store_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_import = builtins.__import__

    def no_inspect(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "inspect_ai" or name.startswith("inspect_ai."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_inspect)
    store = RunStore(store_path, read_only=True)
    with pytest.raises(TherapygymError, match=r"pip install 'therapygym\[inspect\]'"):
        export_run(store, RUN, tmp_path / "x.eval", "inspect")
