"""Shards: one evaluation split across processes or machines by a hash of the session id.

`--shard K/N` keeps the sessions whose id hashes to K modulo N (and judges only those:
a judgement unit follows its session). K counts from 0, as SLURM_ARRAY_TASK_ID and a
Kubernetes Indexed Job's JOB_COMPLETION_INDEX do, so a scheduler's index is the shard as
it is. A session id is already a hash of (run, profile, therapist, sample), so the
partition needs no list of sessions, no coordinator and no shared state: every shard
computes its own sessions from the run's plan, each writes its own store, and
`therapygym runs merge` puts the stores together (docs/scale.md).

Hashing the id again with sha256, rather than reading digits of it, keeps the partition
even for any id, including ids that other code (a probe, an import) makes another way.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from therapygym.errors import TherapygymError

_SPEC = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")
EXPECTED = (
    "expected K/N, two whole numbers with 0 <= K < N (K counts from 0, as "
    "SLURM_ARRAY_TASK_ID and JOB_COMPLETION_INDEX do: 0/4 to 3/4 are the four shards)"
)


class ShardError(TherapygymError):
    """A shard spec that is not K/N with 0 <= K < N, or shard specs that do not go
    together (a store holding another shard of the run)."""


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count`: the sessions whose id hashes to `index` modulo `count`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not (self.count >= 1 and 0 <= self.index < self.count):
            raise ShardError(f"--shard '{self.index}/{self.count}': {EXPECTED}")

    @classmethod
    def parse(cls, text: str) -> Shard:
        """`"K/N"` as a shard; anything else is one line naming --shard and what it takes."""
        match = _SPEC.match(text) if isinstance(text, str) else None
        if match is None:
            raise ShardError(f"--shard '{text}': {EXPECTED}")
        return cls(int(match[1]), int(match[2]))

    def holds(self, session_id: str) -> bool:
        """Whether the session is this shard's: sha256 of its id, modulo the count."""
        digest = hashlib.sha256(session_id.encode()).digest()
        return int.from_bytes(digest, "big") % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_name(spec: str | None) -> str:
    """How a message names a run's shard spec (None: the run is not sharded)."""
    return f"shard {spec}" if spec else "unsharded"


def other_shard(run_id: str, store: object, stored: str | None, given: str | None) -> ShardError:
    """The error for a run resumed (or judged) as another shard than its store holds: a
    store holds one shard of a run, or the whole run, never a mix."""

    def how(spec: str | None) -> str:
        return f"as shard {spec}" if spec else "unsharded"

    return ShardError(
        f"run '{run_id}' in {store} is stored {how(stored)}; this command runs it "
        f"{how(given)}: a store holds one shard of a run or all of it, so give each shard its "
        "own --store (and resume a shard with the same --shard)"
    )
