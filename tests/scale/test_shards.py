"""`--shard K/N`: the partition (every session in exactly one shard, evenly), the spec as
`run`, `judge` and `eval` read it (bad values are one line naming --shard), and a store
that refuses to mix the shards of a run, or a shard with the whole run."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path

import pytest
from clirun import cli
from conftest import RUN_ID, Sharded, stored, table_dump

from therapygym.config import EvalConfig
from therapygym.errors import ConfigError
from therapygym.records import session_id_for
from therapygym.shards import Shard, ShardError


def test_parse_and_print() -> None:
    assert Shard.parse("2/5") == Shard(2, 5) and str(Shard.parse(" 2 / 5 ")) == "2/5"
    assert Shard.parse("0/1").holds("anything")


@pytest.mark.parametrize("text", ["3/3", "4/3", "-1/3", "0/0", "1", "a/b", "1/2/3", "", "1.0/2"])
def test_bad_specs_are_refused(text: str) -> None:
    with pytest.raises(ShardError) as err:
        Shard.parse(text)
    assert str(err.value).startswith(f"--shard '{text}': expected K/N") and "\n" not in str(
        err.value
    )


def test_every_session_is_in_exactly_one_shard_evenly() -> None:
    ids = [session_id_for("run", f"p{i}", "bot", s) for i in range(500) for s in range(4)]
    for count in (1, 2, 3, 7):
        shards = [Shard(k, count) for k in range(count)]
        owners = Counter(sum(s.holds(i) for s in shards) for i in ids)
        assert owners == {1: len(ids)}
        sizes = [sum(s.holds(i) for i in ids) for s in shards]
        assert max(sizes) - min(sizes) < 0.15 * len(ids) / count, sizes
    # the partition is sha256 of the id modulo N: stable across processes and releases
    sid = ids[0]
    expected = int(hashlib.sha256(sid.encode()).hexdigest(), 16) % 7
    assert [k for k in range(7) if Shard(k, 7).holds(sid)] == [expected]


def test_config_keeps_the_spec_as_written_by_shard(tmp_path: Path) -> None:
    given = {"run_id": "r", "judge": {"judges": ["x"]}, "shard": "1 / 4"}
    config = EvalConfig.from_file(None, given)
    assert config.shard == "1/4"
    file = tmp_path / "eval.yaml"
    file.write_text("run_id: r\njudge: {judges: [x]}\nshard: 4/4\n")
    with pytest.raises(ConfigError) as err:
        EvalConfig.from_file(file)
    assert str(err.value).startswith(f"eval config {file}: field 'shard': expected K/N")


@pytest.mark.parametrize("command", ["run", "judge", "eval"])
@pytest.mark.parametrize("value", ["3/3", "x", "-1/2", "1/0"])
def test_bad_shard_option_is_one_line(command: str, value: str, tmp_path: Path) -> None:
    args = {
        "run": ["run", "--therapist", "rule-based", "--run-id", "r"],
        "judge": ["judge", "r", "--judge", "local:smollm2"],
        "eval": ["eval", "--therapist", "rule-based", "--judge", "local:smollm2", "--run-id", "r"],
    }[command]
    store = tmp_path / "store.sqlite"
    ran = cli(*args, "--shard", value, "--store", str(store))
    assert ran.code == 2
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and f"--shard '{value}': expected K/N" in lines[0], ran.stderr
    assert not store.exists()


def test_a_store_holds_one_shard_of_a_run_or_all_of_it(sharded: Sharded, tmp_path: Path) -> None:
    shard0 = tmp_path / "shard0.sqlite"
    shutil.copy(sharded.shards[0], shard0)
    whole = tmp_path / "whole.sqlite"
    shutil.copy(sharded.reference, whole)
    before = {path: table_dump(path) for path in (shard0, whole)}
    runs = "this command runs it"
    judge = ["judge", RUN_ID, "--judge", "bot", "--models-file", str(sharded.models), "--store"]
    cases = [
        (sharded.eval_args(shard0, "--shard", "1/3"), f"stored as shard 0/3; {runs} as shard 1/3"),
        (sharded.eval_args(shard0, "--shard", "0/4"), f"stored as shard 0/3; {runs} as shard 0/4"),
        (sharded.eval_args(shard0), f"stored as shard 0/3; {runs} unsharded"),
        (sharded.eval_args(whole, "--shard", "0/3"), f"stored unsharded; {runs} as shard 0/3"),
        # judging a stored run as a shard: the run must be stored as that shard
        ([*judge, str(whole), "--shard", "2/3"], f"stored unsharded; {runs} as shard 2/3"),
    ]
    for args, expected in cases:
        ran = cli(*args)
        assert ran.code == 2, ran
        lines = ran.stderr.strip().splitlines()
        assert len(lines) == 1 and f"run '{RUN_ID}' in " in lines[0], ran.stderr
        assert expected in lines[0], lines[0]
    assert {path: table_dump(path) for path in (shard0, whole)} == before


def test_a_sharded_resume_and_a_sharded_judge_do_nothing_twice(
    sharded: Sharded, tmp_path: Path
) -> None:
    shard1 = tmp_path / "shard1.sqlite"
    shutil.copy(sharded.shards[1], shard1)
    calls = len(sharded.server.requests)
    ran = cli(*sharded.eval_args(shard1, "--shard", "1/3"))
    assert ran.code == 0, ran.stderr
    judged = cli("judge", RUN_ID, "--judge", "bot", "--rubric", "ctrs,safety", "--models-file",
                 str(sharded.models), "--store", str(shard1), "--shard", "1/3")  # fmt: skip
    assert judged.code == 0, judged.stderr
    assert len(sharded.server.requests) == calls
    assert stored(shard1) == stored(sharded.shards[1])


def test_a_shard_of_an_unnamed_run_is_refused(tmp_path: Path) -> None:
    """Without --run-id each shard would name its own run (run-<time>), and no two of them
    would merge into one: a shard must be given the run's id."""
    store = tmp_path / "store.sqlite"
    ran = cli("run", "--therapist", "rule-based", "--shard", "0/2", "--store", str(store))
    assert ran.code == 2 and len(ran.stderr.strip().splitlines()) == 1
    assert "--shard needs the run's id (--run-id" in ran.stderr
    assert not store.exists()
