"""`eval --ray --shards N`: the run of `conftest.sharded` made as three Ray tasks on this
machine. A worker killed with SIGKILL mid-shard is retried by Ray and resumes the shard
from what it had saved, and the merged store equals the one-process run; a shard that
fails for good is named, exits 3, and a rerun redoes only that shard and writes the
summary JSON that one process writes of the run. The option checks and the local-disk
check need no cluster."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clirun import cli
from conftest import RUN_ID, SHARDS, Sharded, stored
from judges.scripted import conversation_replier

from therapygym.errors import TherapygymError
from therapygym.ray_eval import check_local_disk, filesystem_type, shard_name, work_key
from therapygym.shards import Shard
from therapygym.testing.openai_server import FakeOpenAIServer

ray = pytest.importorskip("ray")

MOUNTS = """\
/dev/vda1 / ext4 rw,relatime 0 0
tmpfs /tmp tmpfs rw,nosuid 0 0
fileserver:/export/home /home nfs4 rw,relatime 0 0
/dev/vdb1 /home/me/scratch\\040disk xfs rw 0 0
"""


def test_the_deepest_mount_point_names_the_filesystem() -> None:
    assert filesystem_type(Path("/tmp/therapygym-ray"), MOUNTS) == "tmpfs"
    assert filesystem_type(Path("/home/me/runs"), MOUNTS) == "nfs4"
    assert filesystem_type(Path("/home/me/scratch disk/runs"), MOUNTS) == "xfs"
    assert filesystem_type(Path("/var/lib"), MOUNTS) == "ext4"
    assert filesystem_type(Path("/var/lib"), "") is None


def test_a_work_dir_on_a_network_filesystem_is_refused() -> None:
    check_local_disk(Path("/tmp/therapygym-ray"), MOUNTS)
    with pytest.raises(TherapygymError, match=r"--ray-work-dir /home/me/runs: .* nfs4 network"):
        check_local_disk(Path("/home/me/runs"), MOUNTS)


def _eval_args(tmp_path: Path, *extra: str) -> list[str]:
    """An `eval` that passes every check and calls nothing (no server answers)."""
    spec = "openai:fake-model?base_url=http://127.0.0.1:9/v1"
    return [
        "eval", "--therapist", "rule-based", "--patient-model", spec, "--judge", spec,
        "--patients", "dep-01-maya", "--store", str(tmp_path / "s.sqlite"), "--no-cache",
        *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "said"),
    [
        (["--ray"], "'--ray': it needs --shards N"),
        (["--shards", "2"], "'--shards': it needs --ray"),
        (["--address", "auto"], "'--address': it needs --ray"),
        (["--ray-work-dir", "/tmp/w"], "'--ray-work-dir': it needs --ray"),
        (["--shard-cpus", "0.5"], "'--shard-cpus': it needs --ray"),
        (
            ["--ray", "--shards", "2", "--shard-cpus", "2"],
            "'--shard-cpus': Input should be less than or equal to 1",
        ),
        (["--ray", "--shards", "2", "--shard", "0/2", "--run-id", "r"], "leave out --shard"),
    ],
)
def test_ray_options_go_together(tmp_path: Path, extra: list[str], said: str) -> None:
    ran = cli(*_eval_args(tmp_path, *extra))
    assert ran.code == 2 and said in ran.stderr, ran.stderr
    assert len(ran.stderr.strip().splitlines()) <= 2  # one line (and the usage hint)
    assert not (tmp_path / "s.sqlite").exists()


def test_a_store_holding_the_run_with_another_config_is_refused_before_any_task(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    spec = server_spec(openai_server(conversation_replier()))
    args = [
        "eval", "--therapist", "rule-based", "--patient-model", spec, "--judge", spec,
        "--patients", "dep-01-maya", "--rubric", "ctrs", "--run-id", "r", "--no-cache",
        "--store", str(tmp_path / "s.sqlite"),
    ]  # fmt: skip
    assert cli(*args, "--max-turns", "2").code == 0
    before = (tmp_path / "s.sqlite").read_bytes()
    ran = cli(*args, "--max-turns", "3", "--ray", "--shards", "2")
    assert ran.code == 2, ran.stderr
    assert "run 'r' already exists in" in ran.stderr and "session.max_turns" in ran.stderr
    assert "shard" not in ran.stderr  # refused before a task started or a shard came back
    assert (tmp_path / "s.sqlite").read_bytes() == before


def test_without_ray_installed_the_error_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails
    ran = cli(*_eval_args(tmp_path, "--ray", "--shards", "2"))
    assert ran.code == 2, ran.stderr
    assert "--ray needs Ray, which is not installed: pip install 'therapygym[ray]'" in ran.stderr
    assert "Traceback" not in ran.stderr


@pytest.fixture(scope="module")
def ray_cluster() -> Iterator[None]:
    """Ray on this machine, two CPUs (two shards at a time), for the tests below;
    `evaluate_on_ray` uses it as it is and leaves it running."""
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def _replace(args: list[str], **values: str) -> list[str]:
    """`args` with the value after `--option` replaced, for each option=value."""
    out = list(args)
    for name, value in values.items():
        out[out.index("--" + name.replace("_", "-")) + 1] = value
    return out


def _shard_pid(shard: Shard) -> int | None:
    """The worker process running this shard's task: Ray titles it with the task's name."""
    for entry in Path("/proc").iterdir():
        try:
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
        if title.startswith("ray::therapygym") and f" shard {shard} " in f"{title} ":
            return int(entry.name)
    return None


def _saved(store: Path) -> dict[str, tuple[str, float]]:
    """The finished sessions a shard's store holds, with when each started and its wall
    time (a session run again would get new ones)."""
    try:
        with sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True) as db:
            rows = db.execute(
                "SELECT session_id, started_at, wall_s FROM sessions WHERE status != 'failed'"
            ).fetchall()
    except sqlite3.Error:  # not created, or its tables not yet
        return {}
    return {sid: (started, wall) for sid, started, wall in rows}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_worker_killed_mid_shard_resumes_and_the_merge_equals_one_process(
    sharded: Sharded, ray_cluster: None, tmp_path: Path
) -> None:
    reference = stored(sharded.reference)
    # the same replies (they depend on the conversation only) at 100 ms, one session at a
    # time in each shard, so a shard is killed with some sessions saved and some not
    server = FakeOpenAIServer(conversation_replier(), latency_s=0.1).start()
    models = tmp_path / "models.yaml"
    models.write_text(sharded.models.read_text().replace(sharded.server.base_url, server.base_url))
    store, work = tmp_path / "ray.sqlite", tmp_path / "work"
    args = _replace(sharded.eval_args(store), models_file=str(models), concurrency="1")
    sizes = {k: sum(Shard(k, SHARDS).holds(s) for s in reference["sessions"]) for k in range(3)}
    victim = Shard(max(sizes, key=sizes.__getitem__), SHARDS)  # the longest shard
    folder = work / work_key(RUN_ID, store) / shard_name(victim)
    killed: dict[str, Any] = {}
    finished = threading.Event()

    def kill_once_some_are_saved() -> None:
        while not finished.wait(0.02):
            saved = _saved(folder / "store.sqlite")
            if saved and (pid := _shard_pid(victim)) is not None:
                os.kill(pid, signal.SIGKILL)
                killed.update(pid=pid, saved=saved)
                return

    killer = threading.Thread(target=kill_once_some_are_saved)
    killer.start()
    try:
        ran = cli(*args, "--ray", "--shards", str(SHARDS), "--ray-work-dir", str(work))
    finally:
        finished.set()
        killer.join()
        server.stop()
    assert ran.code == 0, ran.stderr
    assert killed, "the shard finished before it could be killed"
    assert 0 < len(killed["saved"]) < sizes[victim.index]
    for k in range(SHARDS):
        assert f"shard {k}/{SHARDS} done" in ran.stderr
    assert stored(store) == reference  # same config, session ids, turns and scores
    # the sessions saved before the kill were kept by the retry, not run again
    after = _saved(store)
    assert {sid: after[sid] for sid in killed["saved"]} == killed["saved"]
    assert "Summary of sharded" in ran.stdout
    assert not folder.exists()  # a finished shard's local folder is removed


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_shard_that_fails_is_named_and_a_rerun_redoes_only_it(
    sharded: Sharded, ray_cluster: None, tmp_path: Path
) -> None:
    store, work = tmp_path / "ray.sqlite", tmp_path / "work"
    args = [*sharded.eval_args(store), "--ray", "--shards", str(SHARDS)]
    args += ["--ray-work-dir", str(work)]
    blocked = work / work_key(RUN_ID, store) / shard_name(Shard(1, SHARDS))
    blocked.parent.mkdir(parents=True)
    blocked.write_text("a file where shard 1's folder goes: its task fails")

    ran = cli(*args)
    assert ran.code == 3, ran.stderr
    assert "1 of 3 shards failed (shard 1/3: FileExistsError" in ran.stderr
    assert "rerun the same command to retry them" in ran.stderr
    assert "Summary of" not in ran.stdout  # no summary of a part of a run
    reference = stored(sharded.reference)
    ours = {s for s in reference["sessions"] if not Shard(1, SHARDS).holds(s)}
    assert set(stored(store)["sessions"]) == ours  # the other shards are merged

    blocked.unlink()
    again = cli(*args, "-o", str(tmp_path / "ray.json"))
    assert again.code == 0, again.stderr
    # shards 0 and 2 start from the stores the first run brought back: nothing to redo
    total = len(reference["sessions"])
    assert f"{total} sessions planned, {len(ours)} already done" in again.stdout
    done = {line.split(" done:")[0]: line for line in again.stderr.splitlines() if " done:" in line}
    assert set(done) == {f"shard {k}/{SHARDS}" for k in range(SHARDS)}
    for k in (0, 2):  # merged again: nothing new
        held = sum(Shard(k, SHARDS).holds(s) for s in ours)
        assert done[f"shard {k}/{SHARDS}"].endswith(f": 0 new, {held} there")
    assert stored(store) == reference
    # the summary JSON is the one a process writes of the same run (the reference, copied
    # so the fixture's store stays as it was), to the byte
    one = tmp_path / "one.sqlite"
    shutil.copyfile(sharded.reference, one)
    summarised = cli(*sharded.eval_args(one), "-o", str(tmp_path / "one.json"))
    assert summarised.code == 0, summarised.stderr
    assert (tmp_path / "ray.json").read_text() == (tmp_path / "one.json").read_text()
