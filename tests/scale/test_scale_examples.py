"""The example files of docs/scale.md, run: the SLURM job array script
(configs/scale/slurm-eval.sbatch) and the Kubernetes Indexed Job's script
(configs/scale/k8s-eval-job.yaml), for every index their files declare, with the real
`therapygym` (behind a recorder, so the command each ran is checked too) against the local
server; the stores they copy back merge into the run a single process makes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PROFILES, RUN_ID, Sharded, stored

from therapygym.merge import merge_stores

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "scale"
SBATCH = CONFIGS / "slurm-eval.sbatch"
JOB = CONFIGS / "k8s-eval-job.yaml"


@pytest.fixture
def tools(tmp_path: Path, sharded: Sharded) -> dict[str, Path]:
    """A `therapygym` on PATH that records its arguments and runs the real command, and
    the eval config of the sharded run (the one `sharded` made with options)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    recorder = bin_dir / "therapygym"
    recorder.write_text(
        f"#!{sys.executable}\n"
        "import json, os, sys\n"
        "with open(os.environ['RECORD'], 'a') as f:\n"
        "    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
        "from therapygym.cli.app import main\n"
        "main()\n"
    )
    recorder.chmod(0o755)
    config = tmp_path / "eval.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run": {
                    "therapists": ["bot", "rule-based"],
                    "patients": ",".join(PROFILES),
                    "patient_model": "bot",
                    "samples": 1,
                    "session": {"max_turns": 4},
                },
                "judge": {"judges": ["bot"], "rubrics": ["ctrs", "safety"]},
                "concurrency": 4,
                "models_file": str(sharded.models),
            }
        )
    )
    return {"bin": bin_dir, "config": config, "record": tmp_path / "record.jsonl"}


def _run(argv: list[str], env: dict[str, str], tools: dict[str, Path]) -> list[str]:
    """Run a script; the arguments of the one `therapygym` command it ran."""
    tools["record"].unlink(missing_ok=True)
    path = f"{tools['bin']}{os.pathsep}{os.environ['PATH']}"
    done = subprocess.run(
        argv, env={**os.environ, **env, "PATH": path, "RECORD": str(tools["record"])},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in tools["record"].read_text().splitlines()]
    assert len(calls) == 1, calls
    return calls[0]


def _expected(config: Path, k: int, n: int, store: Path, cache: Path) -> list[str]:
    return ["eval", "--config", str(config), "--run-id", RUN_ID, "--shard", f"{k}/{n}",
            "--store", str(store), "--cache", str(cache)]  # fmt: skip


def test_the_slurm_array_runs_every_shard_and_merges_to_the_run(
    sharded: Sharded, tools: dict[str, Path], tmp_path: Path
) -> None:
    script = SBATCH.read_text()
    first, last = map(int, re.search(r"^#SBATCH --array=(\d+)-(\d+)$", script, re.M).groups())  # type: ignore[union-attr]
    shards = int(re.search(r"^SHARDS=\$\{SHARDS:-(\d+)\}$", script, re.M)[1])  # type: ignore[index]
    assert (first, last) == (0, shards - 1)  # task ids are the shard indices, from 0
    results = tmp_path / "submit" / "results" / RUN_ID
    for k in range(shards):
        node = tmp_path / f"node{k}"  # each task's node-local disk
        env = {"SLURM_ARRAY_TASK_ID": str(k), "SLURM_SUBMIT_DIR": str(tmp_path / "submit"),
               "TMPDIR": str(node), "RUN_ID": RUN_ID, "CONFIG": str(tools["config"])}  # fmt: skip
        local = node / f"therapygym-{RUN_ID}-{k}"
        called = _run(["bash", str(SBATCH)], env, tools)
        assert called == _expected(
            tools["config"], k, shards, local / "store.sqlite", local / "cache.sqlite"
        )
        assert (results / f"shard-{k}.sqlite").is_file()
    assert sorted(p.name for p in results.iterdir()) == [f"shard-{k}.sqlite" for k in range(4)]

    # a task requeued on another node resumes from the copy it brought back: nothing to do
    calls = len(sharded.server.requests)
    env["TMPDIR"] = str(tmp_path / "another-node")
    _run(["bash", str(SBATCH)], env, tools)
    assert len(sharded.server.requests) == calls

    merged = tmp_path / "merged.sqlite"
    inputs = sorted(results.glob("shard-*.sqlite"))
    assert merge_stores(inputs, merged).integrity == "ok"
    assert stored(merged) == stored(sharded.reference)


def test_the_slurm_script_outside_an_array_says_so(tools: dict[str, Path]) -> None:
    env = {**os.environ, "PATH": f"{tools['bin']}{os.pathsep}{os.environ['PATH']}"}
    env.pop("SLURM_ARRAY_TASK_ID", None)
    done = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True)
    assert done.returncode != 0 and "run this as a job array" in done.stderr
    assert not tools["record"].exists()


def _container(job: dict[str, Any]) -> dict[str, Any]:
    (container,) = job["spec"]["template"]["spec"]["containers"]
    return container


def test_the_indexed_job_runs_every_shard_and_merges_to_the_run(
    sharded: Sharded, tools: dict[str, Path], tmp_path: Path
) -> None:
    job = yaml.safe_load(JOB.read_text())
    spec = job["spec"]
    container = _container(job)
    env = {e["name"]: e["value"] for e in container["env"]}
    shards = int(env["SHARDS"])
    assert (job["apiVersion"], job["kind"]) == ("batch/v1", "Job")
    assert spec["completionMode"] == "Indexed"  # JOB_COMPLETION_INDEX, from 0
    assert spec["completions"] == shards and spec["parallelism"] <= shards
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"  # what backoffLimitPerIndex requires
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts[env["SCRATCH"]]]  # the store on node-local disk
    assert env["CONFIG"].startswith(next(p for p in mounts if volumes[mounts[p]].get("configMap")))
    assert container["command"] == ["/bin/sh", "-c"]
    (script,) = container["args"]

    results = tmp_path / "results"
    for k in range(spec["completions"]):
        scratch = tmp_path / f"pod{k}"  # each pod's emptyDir
        run_env = {**env, "JOB_COMPLETION_INDEX": str(k), "SCRATCH": str(scratch),
                   "RESULTS": str(results), "CONFIG": str(tools["config"])}  # fmt: skip
        assert run_env["RUN_ID"] != RUN_ID  # the file's own run id, ...
        run_env["RUN_ID"] = RUN_ID  # ... and the reference's, to compare the merge with
        called = _run(["/bin/sh", "-c", script], run_env, tools)
        assert called == _expected(
            tools["config"], k, shards, scratch / "store.sqlite", scratch / "cache.sqlite"
        )
    merged = tmp_path / "merged.sqlite"
    inputs = sorted(results.glob("shard-*.sqlite"))
    assert len(inputs) == shards
    assert merge_stores(inputs, merged).integrity == "ok"
    assert stored(merged) == stored(sharded.reference)
