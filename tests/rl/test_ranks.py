"""Several training processes: the session ids each rank gives, the main process as the one
writer of the store (every rank's sessions and scores, in rank order; a replayed step
replaces its sessions), usage summed over ranks, and the settings refused or recorded."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from therapygym.errors import ConfigError, TherapygymError
from therapygym.models.usage import RoleUsage, UsageLedger
from therapygym.records import ScoreRecord, SessionStatus, Transcript, Turn
from therapygym.rl.ranks import (
    GatheredStore,
    Place,
    check_same_start,
    gather_usage,
    main_decides,
    session_id,
)
from therapygym.store import RunStore, StoreError

RUN = "train-x"


def _session(sid: str, text: str = "hello") -> Transcript:
    return Transcript(
        session_id=sid,
        run_id=RUN,
        profile_id="dep-01-maya",
        therapist="policy",
        patient="local:smollm2",
        status=SessionStatus.COMPLETED,
        turns=[
            Turn(id=f"{sid}:0", index=0, speaker="patient", text="I feel low."),
            Turn(id=f"{sid}:1", index=1, speaker="therapist", text=text),
        ],
        meta={"reward": {"total": 0.5}},
    )


def _record(sid: str, rubric: str = "ctrs") -> ScoreRecord:
    return ScoreRecord(
        score_id=f"{sid}:{rubric}",
        session_id=sid,
        judge="local:smollm2",
        rubric_id=rubric,
        rubric_version="2.0",
        prompt_fingerprint="fp",
        sample=0,
        target="session",
        result={"score": 4},
        raw_outputs=["{}"],
    )


def test_one_process_keeps_the_ids_runs_were_stored_under() -> None:
    assert session_id(RUN, 3, 2, Place()) == "train-x:step3:2"


def test_ranks_never_share_an_id_and_the_config_fixes_them() -> None:
    ids = [
        session_id(RUN, step, n, Place(rank, 4))
        for step in range(3)
        for rank in range(4)
        for n in (1, 2)
    ]
    assert len(set(ids)) == len(ids)
    assert session_id(RUN, 1, 2, Place(3, 4)) == "train-x:step1:rank3:2"
    # the same rank's same rollout is the same id whatever the count of steps before it
    assert session_id(RUN, 1, 2, Place(3, 4)) in ids


def test_place_is_read_from_trl_arguments() -> None:
    place = Place.of(SimpleNamespace(process_index=1, world_size=2))
    assert place == Place(1, 2) and not place.is_main
    assert Place.of(SimpleNamespace(process_index=0, world_size=2)).is_main


class TwoRanks:
    """Rank 1 and rank 0 of one gather: rank 1 flushes first (it only hands its payload
    over), then rank 0 receives both in rank order, as accelerate's gather_object gives."""

    def __init__(self, store: RunStore) -> None:
        self.handed: list[str] = []
        self.rank1 = GatheredStore(None, gather=self._hand)
        self.rank0 = GatheredStore(store, gather=lambda mine: mine + self.handed)

    def _hand(self, mine: list[str]) -> list[str]:
        self.handed = list(mine)
        return []

    def flush(self) -> int:
        assert self.rank1.flush() == 0
        return self.rank0.flush()


def _play_step(ranks: TwoRanks, step: int, text: str = "hello") -> None:
    for rank, writer in ((0, ranks.rank0), (1, ranks.rank1)):
        sid = session_id(RUN, step, 1, Place(rank, 2))
        writer.save_session(_session(sid, text))
        writer.save_scores([_record(sid, "ctrs")])
        writer.save_scores([_record(sid, "safety")])


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    s = RunStore(tmp_path / "store.sqlite")
    s.ensure_run(RUN, {"train": {"run_id": RUN}, "processes": 2})
    return s


def test_the_main_process_writes_every_ranks_sessions_and_scores(store: RunStore) -> None:
    ranks = TwoRanks(store)
    _play_step(ranks, 0)
    assert store.session_heads(RUN) == []  # held until the step ends
    assert ranks.flush() == 2
    stored = {t.session_id: t for t in store.sessions(RUN)}
    assert set(stored) == {"train-x:step0:rank0:1", "train-x:step0:rank1:1"}
    assert stored["train-x:step0:rank1:1"] == _session("train-x:step0:rank1:1")
    scores = {(r.session_id, r.rubric_id) for r in store.scores(RUN)}
    assert scores == {(sid, rubric) for sid in stored for rubric in ("ctrs", "safety")}
    assert ranks.flush() == 0  # nothing held twice


def test_a_replayed_step_replaces_its_sessions_and_adds_none(store: RunStore) -> None:
    """A resume plays the steps after its checkpoint again under the same ids: the store
    keeps one session per id, the replay's, with the replay's scores."""
    ranks = TwoRanks(store)
    for step in (0, 1):
        _play_step(ranks, step, text="first attempt")
        ranks.flush()
    _play_step(ranks, 1, text="after the resume")
    ranks.flush()
    sessions = list(store.sessions(RUN))
    assert len(sessions) == 4
    texts = {t.session_id: t.turns[1].text for t in sessions}
    assert texts["train-x:step0:rank1:1"] == "first attempt"
    assert texts["train-x:step1:rank0:1"] == texts["train-x:step1:rank1:1"] == "after the resume"
    assert len(store.scores(RUN)) == 8


def test_usage_is_summed_over_ranks_role_by_role() -> None:
    def ledger(calls: int) -> UsageLedger:
        one = UsageLedger()
        one.roles["judge"] = RoleUsage(calls=calls, prompt_tokens=100 * calls)
        return one

    other = ledger(3)
    other.roles["patient"] = RoleUsage(calls=1, completion_tokens=7)
    handed: list[str] = []
    gather_usage(other, gather=lambda mine: handed.extend(mine) or [])  # rank 1
    total = gather_usage(ledger(2), gather=lambda mine: mine + handed)  # rank 0
    assert total.roles["judge"].calls == 5 and total.roles["judge"].prompt_tokens == 500
    assert total.roles["patient"].completion_tokens == 7


def _train_config(tmp_path: Path, **fields: object) -> Path:
    body = {"run_id": "t", "patients": "dep-01-maya", "output_dir": str(tmp_path / "out")}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**body, **fields}))
    return path


def test_ungathered_zero3_generation_is_refused_with_one_line(tmp_path: Path) -> None:
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import check_train_config, load_train_config

    config = load_train_config(_train_config(tmp_path, grpo={"ds3_gather_for_generation": False}))
    with pytest.raises(ConfigError, match="grpo: ds3_gather_for_generation: false cannot work"):
        check_train_config(config)


def test_the_count_of_processes_is_part_of_the_run(tmp_path: Path) -> None:
    """One process records none (runs stored before several existed still resume); a resume
    with another count, whose replayed steps would get other ids, is refused."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import check_train_config, load_train_config, run_record

    config = load_train_config(_train_config(tmp_path))
    inputs = check_train_config(config)
    assert "processes" not in run_record(config, inputs)
    store = RunStore(tmp_path / "s.sqlite")
    store.ensure_run("t", run_record(config, inputs, 2))
    with pytest.raises(StoreError, match="different processes"):
        store.ensure_run("t", run_record(config, inputs, 4))


def test_a_resume_is_the_same_run_wherever_it_starts(tmp_path: Path) -> None:
    """`grpo.resume_from_checkpoint` says where a resume starts, not what the run is: the
    rerun that resumes a run differs from it there and must not be refused for it."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import check_train_config, load_train_config, run_record

    checkpoint = tmp_path / "out" / "trainer" / "checkpoint-3"
    checkpoint.mkdir(parents=True)
    (checkpoint / "trainer_state.json").write_text('{"global_step": 3}')
    first = load_train_config(_train_config(tmp_path, grpo={"save_strategy": "steps"}))
    resume = load_train_config(
        _train_config(
            tmp_path, grpo={"save_strategy": "steps", "resume_from_checkpoint": str(checkpoint)}
        )
    )
    inputs = check_train_config(resume)
    assert inputs.resumed_step == 3
    assert run_record(resume, inputs) == run_record(first, check_train_config(first))


def test_resume_true_takes_the_latest_whole_checkpoint_or_starts_fresh(tmp_path: Path) -> None:
    """`resume_from_checkpoint: true`, so a job that may be killed reruns one command: the
    whole checkpoint of the highest step (by number: checkpoint-10 after checkpoint-2),
    passing over the folders a kill cut short while saving (no readable trainer_state.json,
    which the trainer writes last); with none yet, a fresh start. The run is the same
    either way. A run that saves no checkpoints has none to resume from: refused."""
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import check_train_config, load_train_config, resume_note, run_record

    never_saves = load_train_config(
        _train_config(tmp_path, grpo={"resume_from_checkpoint": True, "save_strategy": "no"})
    )
    with pytest.raises(ConfigError, match="true resumes from the run's own checkpoints, and it"):
        check_train_config(never_saves)

    config = load_train_config(
        _train_config(tmp_path, grpo={"resume_from_checkpoint": True, "save_strategy": "steps"})
    )
    fresh = check_train_config(config)
    assert fresh.resumed_step == 0 and fresh.grpo_args.resume_from_checkpoint is None
    assert resume_note(config, fresh) == (
        f"no whole checkpoint under {tmp_path / 'out' / 'trainer'} yet: training starts at step 0"
    )

    trainer = tmp_path / "out" / "trainer"
    for step, state in [(2, '{"global_step": 2}'), (10, '{"global_step": 10}'),
                        (11, '{"global_st'), (12, None)]:  # fmt: skip
        (trainer / f"checkpoint-{step}").mkdir(parents=True)
        if state is not None:
            (trainer / f"checkpoint-{step}" / "trainer_state.json").write_text(state)
    (trainer / "checkpoint-last").mkdir()  # not a step's folder
    inputs = check_train_config(config)
    assert inputs.resumed_step == 10
    assert inputs.grpo_args.resume_from_checkpoint == str(trainer / "checkpoint-10")
    assert resume_note(config, inputs) == (
        f"resuming from {trainer / 'checkpoint-10'} (step 10); passed over checkpoint-11, "
        "checkpoint-12: no readable trainer_state.json (cut short while saving)"
    )
    plain = load_train_config(_train_config(tmp_path, grpo={"save_strategy": "steps"}))
    assert resume_note(plain, check_train_config(plain)) is None
    assert run_record(config, inputs) == run_record(plain, check_train_config(plain))


@pytest.mark.parametrize("state", [None, "{}", "not json"])
def test_a_resume_from_what_is_not_a_checkpoint_is_refused_with_one_line(
    tmp_path: Path, state: str | None
) -> None:
    pytest.importorskip("trl", reason="the [train] extra is not installed")
    from therapygym.rl.train import check_train_config, load_train_config

    folder = tmp_path / "checkpoint-1"
    folder.mkdir()
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    config = load_train_config(
        _train_config(tmp_path, grpo={"resume_from_checkpoint": str(folder)})
    )
    with pytest.raises(
        ConfigError, match=r"grpo.resume_from_checkpoint: .* is not a trainer check"
    ):
        check_train_config(config)


def test_the_reward_log_keeps_the_steps_a_resume_does_not_replay(tmp_path: Path) -> None:
    """A resume from step 2's checkpoint keeps rows 1-2 and drops 3 (played again, logged
    again) and a row cut short by the kill; a fresh run starts the log empty."""
    from therapygym.rl.train import keep_reward_log

    log = tmp_path / "rewards.jsonl"
    rows = [f'{{"step": {k}, "reward": 0.{k}}}\n' for k in (1, 2, 3)]
    log.write_text("".join(rows) + '{"step": 4, "rew')
    keep_reward_log(log, 2)
    assert log.read_text() == "".join(rows[:2])
    keep_reward_log(log, 0)
    assert not log.exists()
    keep_reward_log(log, 5)  # a resume with no log yet leaves none
    assert not log.exists()


def test_main_decides_stops_every_rank_with_the_main_process_s_error() -> None:
    """The main process raises its own error; another rank, told the message by the
    broadcast, raises it too instead of going on to wait in a collective."""
    told: list[str | None] = []

    def broadcast(value: str | None) -> str | None:
        told.append(value)
        return "run 't' already exists in s.sqlite with a different train"

    def refuse() -> None:
        raise StoreError("run 't' already exists in s.sqlite with a different train")

    with pytest.raises(StoreError):
        main_decides(Place(0, 2), refuse, broadcast)
    assert told == ["run 't' already exists in s.sqlite with a different train"]

    def never() -> None:
        raise AssertionError("only the main process checks")

    with pytest.raises(TherapygymError, match=r"already exists in s\.sqlite"):
        main_decides(Place(1, 2), never, broadcast)


def test_main_decides_lets_every_rank_go_on_when_the_check_passes() -> None:
    calls: list[str | None] = []

    def broadcast(value: str | None) -> str | None:
        calls.append(value)
        return None

    main_decides(Place(0, 2), lambda: None, broadcast)
    main_decides(Place(1, 2), lambda: None, broadcast)
    assert calls == [None, None]
    main_decides(Place(0, 1), lambda: None, broadcast)  # one process: no collective
    assert calls == [None, None]


def test_ranks_that_would_resume_from_different_checkpoints_all_stop_with_one_line() -> None:
    """On nodes that share no disk, `true` can find another latest checkpoint on each (or
    none): every rank is told, naming what each found, instead of the ranks restored to
    different steps waiting for each other in the trainer's collectives."""
    found = ["/out/trainer/checkpoint-4", "/out/trainer/checkpoint-3", ""]
    with pytest.raises(ConfigError) as raised:
        check_same_start(Place(2, 3), None, lambda mine: found)
    assert str(raised.value).startswith(
        "the processes would resume from different checkpoints (rank 0: "
        "/out/trainer/checkpoint-4; rank 1: /out/trainer/checkpoint-3; rank 2: none (step 0))"
    )
    same = ["/out/trainer/checkpoint-4"] * 3
    sent: list[list[str]] = []
    check_same_start(Place(1, 3), same[1], lambda mine: sent.append(mine) or same)
    assert sent == [["/out/trainer/checkpoint-4"]]  # what this rank found, to the others
    check_same_start(Place(0, 3), None, lambda mine: ["", "", ""])  # all start fresh

    def no_collective(mine: list[str]) -> list[str]:
        raise AssertionError("one process gathers nothing")

    check_same_start(Place(0, 1), "/out/trainer/checkpoint-4", no_collective)


def test_main_decides_passes_on_any_failure_of_the_main_process() -> None:
    """Not only a refusal: a main process that fails for any reason must not leave the
    others waiting (they raise its message; it raises its own error)."""
    said: list[str | None] = []

    def broadcast(value: str | None) -> str | None:
        said.append(value)
        return value

    def broken() -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        main_decides(Place(0, 2), broken, broadcast)
    assert said == ["disk full"]


ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


@pytest.mark.parametrize("name", ["ddp", "zero2", "zero3"])
def test_shipped_launch_configs_parse_as_accelerate_reads_them(name: str) -> None:
    """Each file loads through accelerate's own config classes (which refuse unknown keys),
    says what it is for, and a DeepSpeed one names a JSON beside it of its ZeRO stage."""
    pytest.importorskip("accelerate", reason="the [train] extra is not installed")
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.utils.deepspeed import HfDeepSpeedConfig

    path = ACCELERATE_CONFIGS / f"{name}.yaml"
    assert path.read_text().startswith("# ")
    config = ClusterConfig.from_yaml_file(str(path))
    if name == "ddp":
        assert config.distributed_type == "MULTI_GPU" and not config.use_cpu
        return
    assert config.distributed_type == "DEEPSPEED"
    named = Path(config.deepspeed_config["deepspeed_config_file"])
    assert named == Path("configs/accelerate") / f"{name}.json"  # from the repository root
    deepspeed = HfDeepSpeedConfig(str(ACCELERATE_CONFIGS / named.name))
    assert deepspeed.get_value("zero_optimization.stage") == int(name[-1])
    assert deepspeed.is_zero3() == (name == "zero3")
    assert config.deepspeed_config["zero3_init_flag"] == (name == "zero3")


def test_every_shipped_launch_config_is_tested() -> None:
    assert sorted(p.stem for p in ACCELERATE_CONFIGS.glob("*.yaml")) == ["ddp", "zero2", "zero3"]


def test_only_the_main_process_writes_and_prints_the_reward_log(tmp_path: Path) -> None:
    """Every process logs the same (gathered) metrics; one row per step, not one per rank."""
    pytest.importorskip("transformers", reason="the [train] extra is not installed")
    import io

    from rich.console import Console

    from therapygym.rl.train import reward_log

    path, out = tmp_path / "rewards.jsonl", io.StringIO()
    callback = reward_log(path, Console(file=out, width=200))
    logs = {"reward": 0.5, "rewards/ctrs_fidelity/mean": 0.6}
    for zero in (False, True, False):
        state = SimpleNamespace(global_step=1, is_world_process_zero=zero)
        callback.on_log(None, state, None, logs=logs)
    assert len(path.read_text().splitlines()) == 1
    assert out.getvalue().count("step 1:") == 1
