"""A two-process training run killed for real, SIGKILL to the whole `accelerate launch`
process group in the middle of a step, then the same command run again, as a preempted
job is: with `grpo.resume_from_checkpoint: true` the rerun resumes from the last whole
checkpoint, passing over a later one a kill cut short while saving, and ends with the
sessions, the reward log and (bit for bit) the adapter of the run that was never stopped.

The shipped DDP config (configs/accelerate/ddp.yaml) on CPU (gloo), the tiny random Llama
with LoRA (tinylm.py), a checkpoint every step; the patient and the judge are a scripted
local server whose 0.3 s per call holds each step open long enough to be killed inside.
Three launches of about 10 s each on 2 cores."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("trl", reason="the [train] extra is not installed")

from launched import (
    RANKS,
    ROOT,
    launch,
    launch_command,
    launch_env,
    session_ids,
    tensors,
    train_config,
)
from tinylm import tiny_base, transcript_judge

from therapygym.store import RunStore

pytestmark = pytest.mark.slow
STEPS = 3
CHECKPOINTED = dict(save_strategy="steps", save_steps=1, resume_from_checkpoint=True)


def _whole(checkpoint: Path) -> bool:
    """Step 2's checkpoint written out: the trainer state (which the main process writes
    last) and every rank's random state (which each rank writes for itself)."""
    names = ["trainer_state.json", *(f"rng_state_{r}.pth" for r in range(RANKS))]
    return all((checkpoint / name).is_file() for name in names)


def _kill_inside_step_3(config: Path, store: Path, out: Path, log: Path) -> int:
    """Launch the run and SIGKILL the launcher and both ranks at once, as the end of a job
    does (SLURM or Kubernetes kill every process of it), once step 2's checkpoint is whole
    and step 3 waits on the server; the launcher's exit status. The ranks are found as its
    descendants: torch's elastic agent starts each in a session of its own, so a signal to
    the launcher's process group alone would leave them training."""
    import psutil

    with log.open("w") as sink:
        run = subprocess.Popen(
            launch_command("ddp", config, store),
            stdout=sink,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            env=launch_env(),
        )
        try:
            deadline = time.monotonic() + 300
            while run.poll() is None and not _whole(out / "trainer" / "checkpoint-2"):
                assert time.monotonic() < deadline, log.read_text()[-4000:]
                time.sleep(0.02)
            time.sleep(0.1)  # the files' last bytes; step 3 waits at least 0.6 s on the server
            launcher = psutil.Process(run.pid)
            job = [launcher, *launcher.children(recursive=True)]
            ranks = [p for p in job if "therapygym" in " ".join(p.cmdline())]
            assert len(ranks) >= RANKS, [p.cmdline() for p in job]
            for process in job:
                process.kill()
            psutil.wait_procs(job[1:], timeout=60)  # the launcher is reaped by `run.wait`
        finally:
            run.wait(timeout=60)
    return run.returncode


def _transcripts(store: Path) -> dict[str, list[tuple[str, str]]]:
    db = RunStore(store, read_only=True)
    try:
        return {t.session_id: [(u.speaker, u.text) for u in t.turns] for t in db.sessions("ds")}
    finally:
        db.close()


@pytest.mark.timeout(900)
def test_a_run_killed_inside_a_step_reruns_into_the_run_never_stopped(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    import torch

    spec = server_spec(openai_server(transcript_judge, latency_s=0.3))
    base = str(tiny_base(tmp_path / "base"))

    never_stopped = tmp_path / "never-stopped"
    never_stopped.mkdir()
    config = train_config(
        never_stopped, spec, lora=True, model=base, max_steps=STEPS, **CHECKPOINTED
    )
    done = launch("ddp", config, never_stopped / "store.sqlite")
    assert done.returncode == 0, done.stderr[-4000:]
    assert "no whole checkpoint under" in done.stdout  # `true` with none yet: a fresh start
    expected = _transcripts(never_stopped / "store.sqlite")
    assert sorted(expected) == [f"ds:step{k}:rank{r}:1" for k in range(STEPS) for r in range(RANKS)]
    log = (never_stopped / "out" / "rewards.jsonl").read_text()

    killed = tmp_path / "killed"
    killed.mkdir()
    config = train_config(killed, spec, lora=True, model=base, max_steps=STEPS, **CHECKPOINTED)
    store, out = killed / "store.sqlite", killed / "out"
    status = _kill_inside_step_3(config, store, out, killed / "launch.log")
    assert status == -signal.SIGKILL, (killed / "launch.log").read_text()[-4000:]
    assert not (out / "adapter").exists()  # it never finished
    assert session_ids(store) == sorted(expected)[: 2 * RANKS]  # steps 1 and 2 only
    # as if the kill had come while step 3 was being saved: its folder begun, not whole
    cut = out / "trainer" / "checkpoint-3"
    cut.mkdir()
    (cut / "adapter_model.safetensors").write_bytes(b"\0" * 64)

    rerun = launch("ddp", config, store)  # the same command, the same config
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert (
        f"resuming from {out / 'trainer' / 'checkpoint-2'} (step 2); passed over checkpoint-3"
        in " ".join(rerun.stdout.split())
    ), rerun.stdout
    assert _transcripts(store) == expected  # step 3 played as it was, nothing added
    assert (out / "rewards.jsonl").read_text() == log
    assert json.loads((cut / "trainer_state.json").read_text())["global_step"] == STEPS
    adapter = tensors(out / "adapter" / "adapter_model.safetensors")
    reference = tensors(never_stopped / "out" / "adapter" / "adapter_model.safetensors")
    assert adapter.keys() == reference.keys()
    assert all(torch.equal(adapter[name], reference[name]) for name in reference)
