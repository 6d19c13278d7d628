"""`therapygym train` under `accelerate launch` with several processes: which process this
is, the session ids each one gives its rollouts, and the one process that writes the store.

Every process (rank) plays its own share of the rollouts and judges them with its own
patient and judge. What must not be done by every rank is writing: the run store, the
adapter and rewards.jsonl are written by the main process alone (`train.py`).

**One writer for the store.** A rank does not open the store: its rollout saves sessions
and score records into a `GatheredStore`, and at the end of each optimizer step every rank
hands what it holds to the main process (accelerate's `gather_object`, a collective), which
writes them rank by rank into the one SQLite file. Why not a store per rank merged at the
end (`runs merge`):

- the ranks of a multi-node run do not share a disk (and SQLite must not be shared over a
  network file system), so the main process could not read the other nodes' stores; the
  gather goes over the process group the trainer already has;
- the store is whole after every step, as in one process: `runs show` and the report read
  a run while it trains, and nothing is left to merge (or lost) when a run is killed;
- a resume replays the steps after its checkpoint, and the rollouts of a replayed step
  must replace that step's sessions (`RunStore.save_session` does); `merge_runs` keeps the
  row already there when both are finished, as it must for shards, so a merge after a
  resume would keep the killed run's sessions instead.

The gather runs in `on_step_end`, which the trainer calls before it saves a checkpoint, so
a checkpoint never holds a step whose sessions are not stored; a kill loses only sessions
of steps after the last checkpoint, which the resume plays again under the same ids.
The gathered payload is JSON text (transcripts and score records as their pydantic models
dump them): `gather_object` pickles what it sends, so only strings cross between ranks,
and the main process validates what arrives before it writes.

**Session ids** are `<run_id>:step<k>:<n>` in one process (as before several were
possible, so a run stored by an earlier version resumes onto the same ids) and
`<run_id>:step<k>:rank<r>:<n>` with several: rank r's n-th rollout of step k. They are a
function of the config alone (TRL's sampler deals prompts to ranks by its seed), so a rerun
or a resume gives every rollout the id it had. The number of processes is part of the
run's identity (`train.run_record`): a resume with another count would give the replayed
steps other ids and keep the old ones beside them, so it is refused.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from therapygym.errors import ConfigError, TherapygymError
from therapygym.models.usage import RoleUsage, UsageLedger
from therapygym.records import ScoreRecord, Transcript
from therapygym.store import RunStore

Gather = Callable[[list[str]], list[str]]  # every rank's strings, in rank order
Broadcast = Callable[[str | None], str | None]  # the main process's value, on every rank


@dataclass(frozen=True)
class Place:
    """This process among those of the run: its index (the global rank) and their count."""

    index: int = 0
    count: int = 1

    @property
    def is_main(self) -> bool:
        """The process that writes the store, the adapter and rewards.jsonl, and prints."""
        return self.index == 0

    @classmethod
    def of(cls, args: Any) -> Place:
        """The place TRL's own arguments (a `GRPOConfig`) set up: the process group
        `accelerate launch` started, or one process of one without it."""
        return cls(index=int(args.process_index), count=int(args.world_size))


def session_id(run_id: str, step: int, n: int, place: Place) -> str:
    """The id of `place`'s n-th rollout (from 1) generated at optimizer step `step`."""
    if place.count == 1:
        return f"{run_id}:step{step}:{n}"
    return f"{run_id}:step{step}:rank{place.index}:{n}"


def check_generation_gathering(args: Any, where: str) -> None:
    """Refuse `ds3_gather_for_generation: false`. The rollout generates turn by turn, and
    sessions end after different numbers of turns on different ranks; under ZeRO-3 without
    gathered weights every forward pass is a collective, so a rank with a turn left would
    wait forever for the ranks that have none. With it (TRL's default) the rollout gathers
    the weights once per batch (`unwrap_model_for_generation`) and generates alone."""
    if not args.ds3_gather_for_generation:
        raise ConfigError(
            f"{where}: grpo: ds3_gather_for_generation: false cannot work with the multi-turn "
            "rollout (sessions take different numbers of turns on each process, and ZeRO-3 "
            "without gathered weights makes every generation step wait for all of them); "
            "leave it true"
        )


def _broadcast_object(value: str | None) -> str | None:
    from accelerate.utils import broadcast_object_list

    box = [value]
    broadcast_object_list(box, from_process=0)
    return box[0]


def main_decides(
    place: Place, check: Callable[[], object], broadcast: Broadcast = _broadcast_object
) -> None:
    """Run `check`, which only the main process can make (it alone opens the store: a
    resume whose settings differ from the stored run's is refused there), and stop every
    rank when it fails. Without this the main process stops with its one line while the
    others go on into the trainer's first collective and die there with a traceback
    ("Connection closed by peer") under it, or wait in it until the process group times
    out. The main process raises its own error; the others raise a `TherapygymError` with
    its message, so each prints the same line. A collective: every rank calls it."""
    failure: Exception | None = None
    if place.is_main:
        try:
            check()
        except Exception as err:  # any failure: the other ranks must not wait for it
            failure = err
    if place.count > 1:
        said = broadcast(None if failure is None else str(failure))
        if failure is None and said is not None:
            failure = TherapygymError(said)
    if failure is not None:
        raise failure


def _gather_object(payload: list[str]) -> list[str]:
    from accelerate.utils import gather_object

    return list(gather_object(payload))


def check_same_start(place: Place, checkpoint: str | None, gather: Gather = _gather_object) -> None:
    """Stop every rank, with one line, when the processes would resume from different
    checkpoints. Each rank finds its own (`grpo.resume_from_checkpoint: true` takes the
    latest whole one on its disk), and on nodes that share no disk a kill can leave one
    node's latest checkpoint whole and another's cut short; ranks restored to different
    steps would wait for each other in the trainer's collectives until the process group
    timed out. A collective: every rank calls it."""
    if place.count == 1:
        return
    chosen = gather([checkpoint or ""])
    if len(set(chosen)) > 1:
        starts = "; ".join(f"rank {r}: {c or 'none (step 0)'}" for r, c in enumerate(chosen))
        raise ConfigError(
            f"the processes would resume from different checkpoints ({starts}): give "
            "grpo.resume_from_checkpoint the path of one that every node holds whole (nodes "
            "see the same checkpoints with output_dir on a shared disk, or each its own copy "
            "with grpo.save_on_each_node: true)"
        )


class GatheredStore:
    """The run store as a rollout on one of several processes sees it.

    `save_session` and `save_scores` hold what the rollout would have written; `flush`,
    called by every rank at the end of each optimizer step (`FlushToMain`), gathers it all
    to the main process, which writes it in rank order (each session before its scores,
    as the rollout saved them). `store` is the main process's store and None elsewhere.
    """

    def __init__(self, store: RunStore | None, gather: Gather = _gather_object) -> None:
        self.store = store
        self._gather = gather
        self._held: list[dict[str, Any]] = []

    def save_session(self, transcript: Transcript) -> None:
        self._held.append({"session": transcript.model_dump(mode="json")})

    def save_scores(self, records: list[ScoreRecord]) -> None:
        self._held.append({"scores": [r.model_dump(mode="json") for r in records]})

    def flush(self) -> int:
        """Gather every rank's held writes; the main process writes them. A collective:
        every rank must call it the same number of times. Returns the sessions written
        (0 on the other ranks)."""
        payload, self._held = json.dumps(self._held), []
        gathered = self._gather([payload])
        if self.store is None:
            return 0
        written = 0
        for text in gathered:
            for held in json.loads(text):
                if "session" in held:
                    self.store.save_session(Transcript.model_validate(held["session"]))
                    written += 1
                else:
                    self.store.save_scores([ScoreRecord.model_validate(r) for r in held["scores"]])
        return written


def flush_to_main(writer: GatheredStore) -> Any:
    """The trainer callback that flushes `writer` at the end of every optimizer step, on
    every rank, before the trainer saves that step's checkpoint."""
    from transformers import TrainerCallback

    class FlushToMain(TrainerCallback):  # type: ignore[misc]
        """Stores the step's rollouts of every rank through the main process."""

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            writer.flush()

    return FlushToMain()


def gather_usage(ledger: UsageLedger, gather: Gather = _gather_object) -> UsageLedger:
    """Every rank's model usage, summed role by role (a collective): the main process
    prints one usage table for the whole run, not its own share of it."""
    payload = json.dumps(
        {role: usage.model_dump(mode="json") for role, usage in ledger.roles.items()}
    )
    by_role: dict[str, UsageLedger] = {}
    for rank, text in enumerate(gather([payload])):
        for role, usage in json.loads(text).items():
            shares = by_role.setdefault(role, UsageLedger())
            shares.roles[f"rank{rank}"] = RoleUsage.model_validate(usage)
    total = UsageLedger()
    total.roles = {role: ranks.total() for role, ranks in by_role.items()}
    return total
