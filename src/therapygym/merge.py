"""`runs merge`: the stores of a run's shards (or of any runs) put together in one store.

Every check comes before anything is written: each input opens as a run store, no input
is the output, and every run that two stores hold (inputs, or an output that exists) has
the same config there, the shard spec aside (`--shard` is where a shard's sessions came
from, not what the run is). Then each input is copied in one transaction
(`RunStore.merge_runs`): ids are content-addressed (a session id hashes its run, profile,
therapist and sample; a score id its session, judge, rubric, prompt and sample), so a row
already there is the same row and is kept, and merging again changes nothing. The merged
run's config is the run's without a shard spec, the same as a one-process run's, so
`eval` can resume (or judge) the merged store as one; its provenance lists the stores it
was merged from and the shard each held (`merged_from`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from therapygym.errors import TherapygymError
from therapygym.shards import Shard, shard_name
from therapygym.store import RunStore, StoreError, check_store_path

MERGED_FROM = "merged_from"  # the provenance key: {input store: its shard spec or None}


class MergeError(TherapygymError):
    """Stores that cannot be merged: runs of one id with different configs, an input that
    is the output, or no input at all."""


@dataclass
class InputCounts:
    """What one input added: its path, the runs it held (id -> shard spec or None), and
    counts by "runs|sessions|scores copied|already there|replaced"."""

    path: Path
    runs: dict[str, str | None]
    counts: Counter[str]


@dataclass
class MergeResult:
    output: Path
    inputs: list[InputCounts] = field(default_factory=list)
    # per run id, the shards of N not merged into the output yet (none: it is whole)
    missing: dict[str, list[str]] = field(default_factory=dict)
    integrity: str = ""

    @property
    def counts(self) -> Counter[str]:
        total: Counter[str] = Counter()
        for one in self.inputs:
            total.update(one.counts)
        return total


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """A run's config without its shard spec: what the shards of one run share."""
    return {k: v for k, v in config.items() if k != "shard"}


def differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """The dotted fields in which two configs differ (`session.max_turns`)."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            found += differences(a.get(key), b.get(key), f"{prefix}{key}.")
        return found
    return [] if a == b else [prefix.rstrip(".")]


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_same(
    run_id: str, config: dict[str, Any], where: Path, seen: dict[str, Any], there: Path
) -> None:
    """Refuse two configs of one run that differ (the shard spec aside), naming a field."""
    changed = differences(identity(seen), identity(config))
    if changed:
        first = changed[0]
        more = f" (and {len(changed) - 1} more fields)" if len(changed) > 1 else ""
        raise MergeError(
            f"run '{run_id}' has another config in {where} than in {there}: field "
            f"'{first}' is {_describe(_dotted(config, first))} in {where} and "
            f"{_describe(_dotted(seen, first))} in {there}{more}; only stores of the same "
            "run config (its shards) merge"
        )


def _dotted(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (b.exists() and a.samefile(b))
    except OSError:
        return False


def merge_stores(inputs: Sequence[Path | str], output: Path | str) -> MergeResult:
    """Merge the runs of `inputs` into the store at `output` (created when new; merging
    into an existing store adds to it). Raises `TherapygymError` with one line before
    anything is written when the stores do not go together; then copies each input in one
    transaction and checks the output's integrity."""
    inputs, output = [Path(p) for p in inputs], Path(output)
    if not inputs:
        raise MergeError("give the stores to merge: therapygym runs merge A.sqlite B.sqlite -o OUT")
    for path in inputs:
        if _same_file(path, output):
            raise MergeError(f"input {path} is the output -o {output}: merge into another file")
    check_store_path(output, option="-o")
    sources = [RunStore(path, read_only=True) for path in inputs]
    try:
        return _merge(sources, output)
    finally:
        for source in sources:
            source.close()


def _merge(sources: list[RunStore], output: Path) -> MergeResult:
    seen: dict[str, tuple[dict[str, Any], Path]] = {}  # run id -> (its config, where)
    if output.exists():
        existing = RunStore(output, read_only=True)
        try:
            for info in existing.runs():
                if spec := info.config.get("shard"):  # an output holds whole runs
                    raise MergeError(
                        f"-o {output} holds run '{info.run_id}' as {shard_name(spec)}: merge "
                        "into a new file or a merged store, not a shard's"
                    )
                seen[info.run_id] = (info.config, output)
        finally:
            existing.close()
    plans = []
    for source in sources:
        runs = {info.run_id: info.config for info in source.runs()}
        if not runs:
            raise MergeError(f"input {source.path} holds no run")
        for run_id, config in runs.items():
            if run_id in seen:
                _check_same(run_id, config, source.path, *seen[run_id])
            else:
                seen[run_id] = (config, source.path)
        plans.append((source, runs))

    result = MergeResult(output=output)
    target = RunStore(output)
    try:
        for source, runs in plans:
            label = str(source.path.resolve())
            counts = target.merge_runs(
                source,
                {
                    run_id: (identity(config), {MERGED_FROM: {label: config.get("shard")}})
                    for run_id, config in runs.items()
                },
            )
            shards = {run_id: config.get("shard") for run_id, config in runs.items()}
            result.inputs.append(InputCounts(source.path, shards, counts))
        for run_id in {r for _, runs in plans for r in runs}:
            merged = target.run(run_id).provenance.get(MERGED_FROM, {})
            result.missing[run_id] = _missing(list(merged.values()))
        result.integrity = target.integrity_check()
    finally:
        target.close()
    if result.integrity != "ok":
        raise StoreError(f"-o {output}: SQLite's integrity check failed: {result.integrity}")
    return result


def _missing(specs: list[str | None]) -> list[str]:
    """The shards of N that none of `specs` is (none when an unsharded store was merged,
    or when the specs are of different counts, which `--shard` never makes for one run)."""
    shards = [Shard.parse(s) for s in specs if s]
    if len(shards) != len(specs) or len({s.count for s in shards}) != 1:
        return []
    count = shards[0].count
    have = {s.index for s in shards}
    return [f"{k}/{count}" for k in range(count) if k not in have]
