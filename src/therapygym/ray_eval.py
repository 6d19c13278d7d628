"""`eval --ray --shards N`: one evaluation split into N shards, each run as a Ray task.

Ray schedules; therapygym does the rest as it does on one machine. Each task runs
`runner.evaluate` on its shard (`--shard K/N`: the sessions whose id hashes to K, and
their judging) with a store and a response cache of its own in a folder on its node's
LOCAL disk: SQLite relies on file locks that network filesystems (NFS, SMB, Lustre, ...)
do not keep, so a store there can be corrupted, and a work folder on one is refused.

The folder is named by the run and the driver's store (`<work dir>/<run id>-<key>/
shard-K-of-N/`), so a task that Ray retries after its worker died (`max_retries`) and
that lands on the same node resumes the shard from what the killed attempt saved; on
another node it starts the shard again. A task that finishes returns its store as bytes
through Ray's object store, which needs no filesystem shared between the nodes and the
driver, and removes its folder (transcripts are sensitive; temp folders are shared).

The driver writes each shard store it receives to `<store stem>.shards/<run id>/`
beside `config.store`, merges it into `config.store` (`runs merge`, idempotent), and
summarises the merged run as `eval` does. A rerun of the same command sends each saved
shard store back to its task as its starting point, so only what failed, or never
finished, is done again. A shard that fails for good (an error in `evaluate`, which a
retry would repeat, or a worker that died `max_retries` + 1 times) is reported by name;
the other shards are merged, and no summary of the incomplete run is made.
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from therapygym.config import EvalConfig
from therapygym.errors import TherapygymError
from therapygym.merge import differences, merge_stores
from therapygym.models import UsageLedger
from therapygym.runner import EvalResult, JudgeResult, RunResult, evaluate
from therapygym.shards import Shard
from therapygym.store import RunStore, default_store_path
from therapygym.summary import summarise

RAY_EXTRA = "pip install 'therapygym[ray]'"
MAX_RETRIES = 3  # times Ray reruns a shard task whose worker died (killed, OOM, node lost)
WORK_DIR_ENV = "THERAPYGYM_RAY_WORK_DIR"

# Filesystem types (as /proc/mounts names them) on which SQLite's locking cannot be trusted.
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "lustre", "gpfs",
        "beegfs", "ceph", "glusterfs", "fuse.glusterfs", "fuse.sshfs", "fuse.s3fs",
        "fuse.gcsfuse", "fuse.juicefs", "fuse.cephfs", "fuse.rclone",
    }
)  # fmt: skip


@dataclass
class ShardOutcome:
    """What a finished shard task sends back: its store, whole, and what it did."""

    shard: str
    store: bytes
    run: RunResult | None
    judging: JudgeResult | None


@dataclass(frozen=True)
class ShardFailure:
    """A shard that failed for good, and why (one line)."""

    shard: str
    error: str


@dataclass
class RayEvaluation:
    """What `evaluate_on_ray` did: the evaluation of the merged store (its tallies summed
    over the shards; no summary while a shard failed), the shards that failed, and where
    the shard stores are kept."""

    evaluation: EvalResult
    shards: int
    shard_stores: Path
    failed: list[ShardFailure] = field(default_factory=list)

    def failure_line(self) -> str:
        """The shards that failed, each with why, on one line (empty when none did)."""
        if not self.failed:
            return ""
        each = "; ".join(f"shard {f.shard}: {f.error}" for f in self.failed)
        return (
            f"{len(self.failed)} of {self.shards} shards failed ({each}); the others are "
            f"merged into {self.evaluation.store}, and no summary is made of a part of a run"
        )


def import_ray() -> Any:
    """Ray, or one line saying how to install it (it is an optional extra)."""
    try:
        import ray
    except ImportError:
        raise TherapygymError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


def shard_name(shard: Shard) -> str:
    """`shard-K-of-N`: how a shard's files and folders are named."""
    return f"shard-{shard.index}-of-{shard.count}"


def shard_stores_dir(store: Path, run_id: str) -> Path:
    """Where the driver keeps the shard stores of a run: `<store stem>.shards/<run id>/`
    beside the store (results/therapygym.sqlite -> results/therapygym.shards/RUN/)."""
    return store.with_name(f"{store.stem}.shards") / run_id


def work_key(run_id: str, store: Path) -> str:
    """The name of a run's folder under the work dir: the run id, and a digest of the
    driver's host and store, so two stores holding a run of the same name never share
    shard folders on a worker."""
    digest = hashlib.sha256(f"{socket.gethostname()}\0{store.resolve()}\0{run_id}".encode())
    return f"{run_id}-{digest.hexdigest()[:12]}"


def default_work_dir() -> Path:
    """`$THERAPYGYM_RAY_WORK_DIR`, else `therapygym-ray-<user>` in the node's temp folder
    (one per user: the folder is owner-only); read on the worker, so each node uses its own."""
    if given := os.environ.get(WORK_DIR_ENV):
        return Path(given)
    return Path(tempfile.gettempdir()) / f"therapygym-ray-{getpass.getuser()}"


def filesystem_type(path: Path, mounts: str) -> str | None:
    """The type of the filesystem holding `path` (absolute), by the deepest mount point
    above it in `mounts` (the text of /proc/mounts); None when no mount point covers it."""
    best, kind = -1, None
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(fields[1].replace("\\040", " "))  # /proc/mounts escapes spaces
        if (point == path or point in path.parents) and len(point.parts) > best:
            best, kind = len(point.parts), fields[2]
    return kind


def check_local_disk(folder: Path, mounts: str | None = None) -> None:
    """Refuse a work folder on a network filesystem, by `mounts` (default: /proc/mounts,
    where there is one): SQLite over NFS or SMB can corrupt the store."""
    if mounts is None:
        table = Path("/proc/mounts")
        if not table.exists():
            return
        mounts = table.read_text(errors="replace")
    kind = filesystem_type(folder.resolve(), mounts)
    if kind in NETWORK_FILESYSTEMS:
        raise TherapygymError(
            f"--ray-work-dir {folder}: on {socket.gethostname()} it is on a {kind} network "
            "filesystem, where SQLite's locks do not hold; give a folder on each node's "
            f"local disk (or set ${WORK_DIR_ENV} there)"
        )


@contextmanager
def _working_dir(path: str) -> Iterator[None]:
    """Run in the driver's working directory when the node has it (a shared checkout),
    so the config's relative paths (a prompt file, a models file) mean what they meant
    there; on a node without it they are looked up where the worker runs, and a missing
    file fails the shard with the error that names it."""
    before = os.getcwd()
    if os.path.isdir(path):
        os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write a closed store's file whole or not at all, owner-only (transcripts are
    sensitive). A log left beside an older file of that name would be replayed into the
    new one by SQLite, so it goes first."""
    for folder in reversed([p for p in (path.parent, *path.parent.parents) if not p.exists()]):
        folder.mkdir(mode=0o700, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    fd = os.open(partial, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    os.replace(partial, path)


def _whole_store(path: Path) -> bytes:
    """The bytes of a closed store. SQLite folds the write-ahead log into the file when the
    last connection closes; a log left behind means another process still has it open,
    and the file alone would miss what the log holds."""
    wal = path.with_name(path.name + "-wal")
    if wal.exists() and wal.stat().st_size > 0:
        raise TherapygymError(f"store {path} is still open elsewhere ({wal} is not empty)")
    return path.read_bytes()


def run_shard(
    config: EvalConfig,
    shard: str,
    *,
    key: str,
    cwd: str,
    work_dir: str | None = None,
    seed: bytes | None = None,
) -> ShardOutcome:
    """The body of one shard's Ray task: `evaluate` the shard in its folder on this node's
    local disk, resuming what the folder holds (what a killed attempt saved) or else
    `seed` (the shard's store as an earlier run of the command brought it back); return
    the finished store's bytes and remove the folder."""
    root = Path(work_dir) if work_dir else default_work_dir()
    folder = root / key / shard_name(Shard.parse(shard))
    check_local_disk(folder)
    store = folder / "store.sqlite"
    if seed is not None:
        # the folder continues this seed (a retry of a task that started from it), or it
        # is older than the seed (an attempt whose shard finished elsewhere) and is replaced
        marker, digest = folder / "seed.sha256", hashlib.sha256(seed).hexdigest()
        if not (store.exists() and marker.exists() and marker.read_text() == digest):
            shutil.rmtree(folder, ignore_errors=True)  # with a stale write-ahead log
            _write_atomically(store, seed)
            marker.write_text(digest)
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    local = config.model_copy(
        update={"shard": shard, "store": store, "cache": folder / "cache.sqlite", "output": None}
    )
    with _working_dir(cwd):
        result = asyncio.run(evaluate(local))
    outcome = ShardOutcome(shard, _whole_store(store), result.run, result.judging)
    shutil.rmtree(folder)
    return outcome


def _summed_usage(ledgers: Sequence[UsageLedger]) -> UsageLedger:
    """One ledger of several, role by role (`UsageLedger.total` sums the roles it holds,
    so each role's parts are summed as the roles of a ledger of their own)."""
    out = UsageLedger()
    for role in dict.fromkeys(role for ledger in ledgers for role in ledger.roles):
        parts = UsageLedger()
        parts.roles = {
            str(i): one.roles[role] for i, one in enumerate(ledgers) if role in one.roles
        }
        out.roles[role] = parts.total()
    return out


def _summed_runs(results: Sequence[RunResult]) -> RunResult | None:
    if not results:
        return None
    return RunResult(
        run_id=results[0].run_id,
        planned=sum(r.planned for r in results),
        skipped=sum(r.skipped for r in results),
        completed=sum(r.completed for r in results),
        failed=sum(r.failed for r in results),
        errors=[e for r in results for e in r.errors],
        usage=_summed_usage([r.usage for r in results]),
    )


def _summed_judgings(results: Sequence[JudgeResult]) -> JudgeResult | None:
    if not results:
        return None
    return JudgeResult(
        units=sum(r.units for r in results),
        skipped=sum(r.skipped for r in results),
        judged=sum(r.judged for r in results),
        failed=sum(r.failed for r in results),
        errors=[e for r in results for e in r.errors],
        usage=_summed_usage([r.usage for r in results]),
        judges=sorted({j for r in results for j in r.judges}),
    )


def _failure_line(err: BaseException) -> str:
    """The first line of what made a task fail: the task's own exception where Ray has
    it (a `TherapygymError` says what to fix), else Ray's (the worker died)."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip() or type(cause).__name__
    return f"{type(cause).__name__}: {text.splitlines()[0]}"


def _say(console: Console | None, text: str) -> None:
    """One line of progress, never wrapped (it ends with a path to copy)."""
    if console is not None:
        console.print(text, markup=False, highlight=False, soft_wrap=True)


def evaluate_on_ray(
    config: EvalConfig,
    *,
    shards: int,
    address: str | None = None,
    work_dir: Path | str | None = None,
    shard_cpus: float = 1.0,
    max_retries: int = MAX_RETRIES,
    console: Console | None = None,
) -> RayEvaluation:
    """Run `config` as `shards` Ray tasks (one shard each), merge their stores into
    `config.store` and summarise it as `evaluate` does.

    Every pre-flight check runs here first. Ray is started on this machine unless it is
    running already or `address` names a cluster ("auto": the one this machine belongs
    to); one started here is shut down at the end. `work_dir` is each node's folder for
    the shards' stores (default `default_work_dir()`, on that node's local disk).
    `shard_cpus` is what Ray reserves for each task: a shard is one process with one
    event loop, which uses at most one core, and mostly waits on the model servers, so
    0.5 runs two shards per core where the servers set the pace.
    """
    if config.run is None:
        raise TherapygymError(
            "--ray runs the sessions of a run section; judge a stored run without --ray"
        )
    if config.shard is not None:
        raise TherapygymError("--ray runs every shard of the run itself: leave out --shard")
    if shards < 1:
        raise TherapygymError(f"--shards {shards}: expected 1 or more")
    if not 0 < shard_cpus <= 1:
        raise TherapygymError(f"--shard-cpus {shard_cpus}: expected more than 0, at most 1")
    ray = import_ray()
    plans = config.check()
    assert plans.run is not None  # a run section makes a run plan
    store_path = config.store if config.store is not None else default_store_path()
    _check_stored_run(store_path, plans.run_id, plans.run.record())
    saved = shard_stores_dir(store_path, plans.run_id)
    key = work_key(plans.run_id, store_path)
    started = not ray.is_initialized()
    if started:
        try:
            ray.init(address=address)
        except (ConnectionError, ValueError, RuntimeError) as err:
            where = f"--address {address}" if address else "--ray"
            raise TherapygymError(f"{where}: Ray did not start: {_failure_line(err)}") from None
    try:
        task = ray.remote(num_cpus=shard_cpus, max_retries=max_retries, retry_exceptions=False)(
            run_shard
        )
        pending: dict[Any, Shard] = {}
        for index in range(shards):
            shard = Shard(index, shards)
            copy = saved / f"{shard_name(shard)}.sqlite"
            ref = task.options(name=f"therapygym {plans.run_id} shard {shard}").remote(
                config,
                str(shard),
                key=key,
                cwd=os.getcwd(),
                work_dir=None if work_dir is None else str(work_dir),
                seed=copy.read_bytes() if copy.exists() else None,
            )
            pending[ref] = shard
        outcomes, failed = _collect(ray, pending, saved, store_path, console)
    finally:
        if started:
            ray.shutdown()
    result = EvalResult(config=config, run_id=plans.run_id, store=store_path)
    result.run = _summed_runs([o.run for o in outcomes if o.run is not None])
    result.judging = _summed_judgings([o.judging for o in outcomes if o.judging is not None])
    if result.judging is not None and not failed:
        store = RunStore(store_path)
        try:
            judging = result.judging
            scored = {spec for spec, *_ in judging.judges} if judging.units else ()
            result.summary = summarise(store, plans.run_id, config.aggregation, judges=scored)
        finally:
            store.close()
        result.embedded_judge = bool(result.summary.embedded_judges)
        if config.output is not None:
            result.summary.write_json(config.output)  # a session at a time, as run_eval
    failed.sort(key=lambda f: Shard.parse(f.shard).index)
    return RayEvaluation(result, shards, saved, failed)


def _check_stored_run(store: Path, run_id: str, record: dict[str, Any]) -> None:
    """Refuse, before any task starts, a store that holds the run with another config:
    the merge of the first shard to come back would refuse it after the work was done."""
    if not store.exists():
        return
    opened = RunStore(store, read_only=True)
    try:
        stored = next((r.config for r in opened.runs() if r.run_id == run_id), None)
    finally:
        opened.close()
    if stored is not None and (changed := differences(stored, record)):
        raise TherapygymError(
            f"run '{run_id}' already exists in {store} with a different {', '.join(changed)}; "
            "resume it with the same settings or pick a new --run-id"
        )


def _collect(
    ray: Any, pending: dict[Any, Shard], saved: Path, store: Path, console: Console | None
) -> tuple[list[ShardOutcome], list[ShardFailure]]:
    """Take each shard as it finishes: keep its store beside the driver's, merge it into
    the driver's store, and say so; a shard that failed for good is listed. On Ctrl-C the
    shards still running are cancelled (what they saved stays in their folders, and a
    rerun on the same nodes resumes it)."""
    outcomes: list[ShardOutcome] = []
    failed: list[ShardFailure] = []
    try:
        while pending:
            [ref], _ = ray.wait(list(pending), num_returns=1)
            shard = pending.pop(ref)
            try:
                outcome: ShardOutcome = ray.get(ref)
            except ray.exceptions.RayError as err:
                failed.append(ShardFailure(str(shard), _failure_line(err)))
                _say(console, f"shard {shard} failed: {failed[-1].error}")
                continue
            copy = saved / f"{shard_name(shard)}.sqlite"
            _write_atomically(copy, outcome.store)
            counts = merge_stores([copy], store).counts
            outcome.store = b""  # merged: the bytes need not be held any longer
            outcomes.append(outcome)
            sessions = outcome.run.planned if outcome.run is not None else 0
            merged = f"{counts['sessions copied']} new, {counts['sessions already there']} there"
            if replaced := counts["sessions replaced"]:
                merged += f", {replaced} failed there now finished"
            _say(console, f"shard {shard} done: {sessions} sessions; into {store}: {merged}")
    except KeyboardInterrupt:
        for ref in pending:
            ray.cancel(ref)
        raise
    return outcomes, failed
