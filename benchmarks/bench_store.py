"""Store scale: what a run store holding N judged sessions costs in time and memory.

    .venv/bin/python benchmarks/bench_store.py [--sessions 10000] [--json PATH]
    .venv/bin/python benchmarks/bench_store.py --sessions 2500,5000,10000   # the slope
    .venv/bin/python benchmarks/bench_store.py --sessions 200               # a smoke run

The store is written through the real code path: `RunStore.save_session` once per
session (one transaction each, as the runner does), then `RunStore.save_scores` for a
CTRS unit (11 items) and a safety unit (12 labels) per finished session (one transaction
per unit, as `judge_run` does). Transcripts are synthetic but shaped like real ones: 10
turns of about 60 words drawn from the words of the shipped patient profiles, the
profiles' own risk cues surfacing at their turn (so the safety labels that depend on cues
are not applicable by rule elsewhere, as in a real run), 3 therapists, 1% failed
sessions, judge rationales and raw judge JSON of realistic length.

Every operation then runs in a fresh Python process, so each peak RSS
(`ru_maxrss` at the end of that process) belongs to that operation alone. The process's
peak after its imports is reported as the baseline, and the difference is what the
operation's data cost. Operations, each as the command that does it calls the library:

- write: the N sessions and their scores (what `run` + `judge` leave behind);
- runs list: `RunStore(path).runs()`;
- resume check: `finished_session_ids` + `judged_units` (what `run`/`eval` read before
  deciding what is left to do);
- sessions: `store.sessions(run_id)` iterated to the end (what the report, the viewer
  and the transcript exports read; summarise and `judge_run` read `session_heads`);
- summarise: `summary.summarise` (per-session scores, per-therapist bootstrap CIs);
- summary json: `summarise` and then `Summary.write_json` (the file `eval -o` writes);
- export jsonl / parquet: `report.exports.export_run` with the default content
  (transcripts);
- report html: `report.html.write_report` (`therapygym report`: the summary, charts and
  a bounded sample of transcripts);
- viewer run page: `GET /runs/{run_id}` from `ViewerServer`: the first page of
  sessions (read from the store a page at a time; the leaderboard's summary computed in
  the background), a page in the middle, `?label=any`, the summary JSON, the page again;
- export csv / scores parquet / sessions csv / hf: `export_run` of transcripts (CSV),
  scores (Parquet), per-session scores (CSV) and the Hugging Face folder, each streamed in
  batches.

With several `--sessions` values the script also prints the RSS above baseline per
operation for each N and the slope in MB per 1,000 sessions (least squares). Wall times
on a shared 2-core machine are indicative (each row also gives the operation's CPU time,
which other jobs on the machine change less, and the tables the load average); memory is
the measurement. Results in docs/benchmarks.md.

    .venv/bin/python benchmarks/bench_store.py --sessions 10000,100000 --workdir /tmp/bs \
        --ops write,summarise,"summary json","report html"      # issue 22: 100,000 sessions
    .venv/bin/python benchmarks/bench_store.py --sessions 100000 --workdir /tmp/bs --reuse \
        --ops summarise,"report html"                           # again, on the stores kept
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the parent process imports no therapygym code: its RSS stays small
    from therapygym.patients.profile import PatientProfile
    from therapygym.records import ScoreRecord, Transcript

RUN_ID = "bench-store"
THERAPISTS = (
    "openai:Qwen/Qwen2.5-7B-Instruct?base_url=http://127.0.0.1:8000/v1",
    "rule-based",
    "theraagent:openai:gpt-4o-mini",
)
PATIENT_MODEL = "openai:gpt-4o-mini"
JUDGE = "openai:gpt-4o"
TURNS = 10
WORDS_PER_TURN = 60
FAILED_EVERY = 100  # 1% of sessions fail (no scores, as in a real run)
MB = 1024 * 1024
FINGERPRINTS = {"ctrs": "3f9a1c0d2b7e4a56", "safety": "b81e0f5c9d2a7364"}


# -- the synthetic run -----------------------------------------------------------------


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def word_pool(profiles: list[PatientProfile]) -> list[str]:
    """Every word of the shipped profiles (a few thousand distinct ones): text drawn from
    it has the byte length of real English, and no two turns are alike."""
    return [w for p in profiles for s in _strings(p.model_dump(mode="json")) for w in s.split()]


def prose(rng: random.Random, pool: list[str], words: int) -> str:
    """`words` words in sentences of 6-16 words."""
    out: list[str] = []
    while len(out) < words:
        sentence = rng.choices(pool, k=min(rng.randint(6, 16), words - len(out)))
        sentence[0] = sentence[0].capitalize()
        sentence[-1] = sentence[-1].rstrip(".,;:") + "."
        out += sentence
    return " ".join(out)


@dataclass
class Synth:
    """Makes the k-th session of the run and its score records, deterministically."""

    profiles: list[PatientProfile]
    pool: list[str]
    ctrs_items: list[str]
    safety_labels: list[tuple[str, set[str]]]  # (label id, cues it depends on)
    ctrs_version: str
    safety_version: str

    @classmethod
    def load(cls) -> Synth:
        from therapygym.judges.rubric import CTRSRubric, SafetyRubric, builtin_rubric
        from therapygym.patients.library import load_profiles

        profiles = load_profiles()
        ctrs, safety = builtin_rubric("ctrs"), builtin_rubric("safety")
        assert isinstance(ctrs, CTRSRubric) and isinstance(safety, SafetyRubric)
        return cls(
            profiles=profiles,
            pool=word_pool(profiles),
            ctrs_items=[i.id for i in ctrs.items],
            safety_labels=[(lb.id, {c.value for c in lb.requires_cues}) for lb in safety.labels],
            ctrs_version=ctrs.version,
            safety_version=safety.version,
        )

    def run_config(self, sessions: int) -> dict[str, Any]:
        """The run's record, shaped like `RunPlan.record()`."""
        per = len(self.profiles) * len(THERAPISTS)
        return {
            "therapists": list(THERAPISTS),
            "therapist_prompt": None,
            "patient_model": PATIENT_MODEL,
            "profiles": [f"{p.id}@{p.version}" for p in self.profiles],
            "samples": -(-sessions // per),
            "session": {"max_turns": TURNS, "opener": "patient", "max_tokens": 256,
                        "temperature": 0.7},
        }  # fmt: skip

    def transcript(self, k: int) -> Transcript:
        from therapygym.records import SessionStatus, Transcript, Turn, seed_for, session_id_for

        rng = random.Random(k)
        profile = self.profiles[k % len(self.profiles)]
        therapist = THERAPISTS[(k // len(self.profiles)) % len(THERAPISTS)]
        sample = k // (len(self.profiles) * len(THERAPISTS))
        sid = session_id_for(RUN_ID, profile.id, therapist, sample)
        failed = k % FAILED_EVERY == FAILED_EVERY - 1
        n_turns = 3 if failed else TURNS
        cues_at = {2 * (c.window[0] - 1): c for c in profile.risk_cues}  # patient turn -> index
        turns = []
        for i in range(n_turns):
            speaker = "patient" if i % 2 == 0 else "therapist"
            text = prose(rng, self.pool, rng.randint(WORDS_PER_TURN - 20, WORDS_PER_TURN + 20))
            cue = cues_at.get(i)
            if cue is not None:
                text += " " + cue.disclosure
            turns.append(
                Turn(
                    id=f"{sid}:{i}",
                    index=i,
                    speaker=speaker,
                    text=text,
                    latency_s=rng.uniform(0.3, 4.0),
                    prompt_tokens=rng.randint(300, 2500),
                    completion_tokens=rng.randint(40, 160),
                    model=therapist if speaker == "therapist" else PATIENT_MODEL,
                    cues=[cue.kind.value] if cue is not None else [],
                )
            )
        return Transcript(
            session_id=sid,
            run_id=RUN_ID,
            profile_id=profile.id,
            profile_version=profile.version,
            therapist=therapist,
            patient=PATIENT_MODEL,
            sample=sample,
            seed=seed_for(sid),
            status=SessionStatus.FAILED if failed else SessionStatus.COMPLETED,
            error="model openai:gpt-4o-mini: HTTP 503 after 4 attempts" if failed else None,
            turns=turns,
            started_at="2026-11-23T10:00:00+00:00",
            wall_s=rng.uniform(5.0, 40.0),
            meta={"cues_tracked": True},
        )

    def _rationale(self, rng: random.Random, chars: int = 240) -> str:
        return prose(rng, self.pool, rng.randint(18, 40))[:chars]

    def score_units(self, t: Transcript) -> list[list[ScoreRecord]]:
        """A CTRS unit and a safety unit, shaped as `CTRSJudge`/`SafetyJudge` store them:
        `result` holds turn ids as evidence, `raw_outputs` the judge's JSON with T labels."""
        from therapygym.records import ScoreRecord, score_id

        rng = random.Random(f"scores-{t.session_id}")
        said = [x for x in t.turns if x.speaker == "therapist"]
        quality = rng.randint(1, 5)
        items: dict[str, dict[str, Any]] = {}
        for item in self.ctrs_items:
            cited = rng.sample(said, k=rng.randint(1, 2))
            items[item] = {
                "score": max(0, min(6, quality + rng.randint(-1, 1))),
                "rationale": self._rationale(rng),
                "evidence": [x.id for x in cited],
            }
        surfaced = {c for x in t.turns for c in x.cues}
        labels: dict[str, dict[str, Any]] = {}
        for label, needs in self.safety_labels:
            if needs and not needs & surfaced:
                labels[label] = {"verdict": "not_applicable", "severity": "none", "evidence": [],
                                 "rationale": "No client cue that this label depends on "
                                 "occurred.", "decided_by": "rule"}  # fmt: skip
                continue
            yes = rng.random() < 0.06
            labels[label] = {
                "verdict": "yes" if yes else "no",
                "severity": rng.choice(("low", "medium", "high")) if yes else "none",
                "evidence": [rng.choice(said).id] if yes else [],
                "rationale": self._rationale(rng),
                "decided_by": "judge",
            }

        def raw(entries: dict[str, dict[str, Any]]) -> str:
            shown = {
                k: {**v, "evidence": [f"T{int(e.rsplit(':', 1)[1]) + 1}" for e in v["evidence"]]}
                for k, v in entries.items()
                if v.get("decided_by") != "rule"
            }
            for v in shown.values():
                v.pop("decided_by", None)
            return json.dumps(shown, separators=(",", ":"))

        def rec(rubric: str, version: str, result: dict[str, Any], raw_out: str) -> ScoreRecord:
            fingerprint = FINGERPRINTS[rubric]  # one per rubric and settings, as in a run
            return ScoreRecord(
                score_id=score_id(t.session_id, JUDGE, f"{rubric}@{version}", fingerprint, 0, ""),
                session_id=t.session_id,
                judge=JUDGE,
                rubric_id=rubric,
                rubric_version=version,
                prompt_fingerprint=fingerprint,
                sample=0,
                result=result,
                raw_outputs=[raw_out],
                prompt_tokens=rng.randint(3500, 5000),
                completion_tokens=rng.randint(600, 1200),
            )

        return [
            [rec("ctrs", self.ctrs_version, {"mode": "one_call", "items": items}, raw(items))],
            [rec("safety", self.safety_version, {"labels": labels}, raw(labels))],
        ]


# -- operations (each runs alone in a child process) -------------------------------------


@dataclass
class Ctx:
    store: Path
    out: Path
    sessions: int


def op_write(ctx: Ctx) -> dict[str, Any]:
    """Sessions first (the runner), then scores (the judge), one transaction per session
    and per judgement unit; the store is closed at the end, which checkpoints the WAL."""
    from therapygym.store import RunStore

    synth = Synth.load()
    store = RunStore(ctx.store)
    store.ensure_run(RUN_ID, synth.run_config(ctx.sessions))
    t0 = time.perf_counter()
    for k in range(ctx.sessions):
        store.save_session(synth.transcript(k))
    t1 = time.perf_counter()
    units = 0
    for k in range(ctx.sessions):
        t = synth.transcript(k)  # made again rather than kept: the writer holds one at a time
        if t.status.value != "failed":
            for unit in synth.score_units(t):
                store.save_scores(unit)
                units += 1
    t2 = time.perf_counter()
    store.close()
    size = sum(p.stat().st_size for p in ctx.store.parent.glob(ctx.store.name + "*"))
    return {
        "sessions_s": t1 - t0,
        "scores_s": t2 - t1,
        "units": units,
        "sessions_per_s": ctx.sessions / (t2 - t0),
        "store_mb": size / MB,
        "bytes_per_session": size / ctx.sessions,
        "detail": f"{ctx.sessions / (t2 - t0):.0f} sessions/s (sessions {t1 - t0:.1f} s, "
        f"{units} score units {t2 - t1:.1f} s); store {size / MB:.1f} MB, "
        f"{size / ctx.sessions / 1024:.1f} KiB/session",
    }


def op_runs(ctx: Ctx) -> dict[str, Any]:
    from therapygym.store import RunStore

    runs = RunStore(ctx.store).runs()
    return {"detail": f"{len(runs)} run, {runs[0].sessions} sessions"}


def op_resume(ctx: Ctx) -> dict[str, Any]:
    from therapygym.store import RunStore

    store = RunStore(ctx.store)
    done = store.finished_session_ids(RUN_ID)
    units = store.judged_units(RUN_ID)
    return {"detail": f"{len(done)} finished ids, {len(units)} judged units"}


def op_sessions(ctx: Ctx) -> dict[str, Any]:
    """Also the time to the first transcript: a generator that streams gives it at once,
    one that reads everything first gives it after nearly the whole wall time."""
    from therapygym.store import RunStore

    store = RunStore(ctx.store, read_only=True)
    t0 = time.perf_counter()
    first: float | None = None
    n = turns = 0
    for t in store.sessions(RUN_ID):
        if first is None:
            first = time.perf_counter() - t0
        n += 1
        turns += len(t.turns)
    return {"first_s": first, "detail": f"{n} sessions, {turns} turns; first after {first:.2f} s"}


def op_summarise(ctx: Ctx) -> dict[str, Any]:
    from therapygym.store import RunStore
    from therapygym.summary import summarise

    summary = summarise(RunStore(ctx.store, read_only=True), RUN_ID)
    per = max(t.sessions for t in summary.therapists)
    return {"detail": f"{len(summary.sessions)} scored sessions, {len(summary.therapists)} "
            f"therapists (up to {per:,} sessions each)"}  # fmt: skip


def op_summary_json(ctx: Ctx) -> dict[str, Any]:
    from therapygym.store import RunStore
    from therapygym.summary import summarise

    summary = summarise(RunStore(ctx.store, read_only=True), RUN_ID)
    t0 = time.perf_counter()
    path = summary.write_json(ctx.out / "summary.json")
    size = path.stat().st_size
    path.unlink()
    wrote = time.perf_counter() - t0
    return {"file_mb": size / MB, "detail": f"{size / MB:.1f} MB of JSON, written in {wrote:.1f} s"}


def _export(ctx: Ctx, fmt: str) -> dict[str, Any]:
    from therapygym.report.exports import export_run
    from therapygym.store import RunStore

    path = ctx.out / f"export.{fmt}"
    n = export_run(RunStore(ctx.store, read_only=True), RUN_ID, path, fmt)  # type: ignore[arg-type]
    size = path.stat().st_size
    path.unlink()
    return {"file_mb": size / MB, "detail": f"{n} sessions, {size / MB:.1f} MB"}


def op_export_jsonl(ctx: Ctx) -> dict[str, Any]:
    return _export(ctx, "jsonl")


def op_export_parquet(ctx: Ctx) -> dict[str, Any]:
    return _export(ctx, "parquet")


def op_report(ctx: Ctx) -> dict[str, Any]:
    from therapygym.report.html import write_report
    from therapygym.store import RunStore

    path = write_report(RunStore(ctx.store, read_only=True), RUN_ID, ctx.out / "report.html")
    size = path.stat().st_size
    shown = path.read_text(encoding="utf-8").count('<details class="session"')
    path.unlink()
    return {"file_mb": size / MB,
            "detail": f"{size / MB:.1f} MB of HTML, {shown} transcripts"}  # fmt: skip


def _export_to(ctx: Ctx, fmt: str, content: str) -> dict[str, Any]:
    """`export_run` of one content; the hf format writes a folder (every content)."""
    import shutil

    from therapygym.report.exports import export_run
    from therapygym.store import RunStore

    path = ctx.out / f"export-{content}.{fmt}"
    store = RunStore(ctx.store, read_only=True)
    n = export_run(store, RUN_ID, path, fmt, content)  # type: ignore[arg-type]
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    size = sum(p.stat().st_size for p in files)
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink()
    what = "records" if content == "scores" else "sessions"
    return {"file_mb": size / MB, "detail": f"{n} {what}, {size / MB:.1f} MB"}


def op_export_csv(ctx: Ctx) -> dict[str, Any]:
    return _export_to(ctx, "csv", "transcripts")


def op_export_scores_parquet(ctx: Ctx) -> dict[str, Any]:
    return _export_to(ctx, "parquet", "scores")


def op_export_sessions_csv(ctx: Ctx) -> dict[str, Any]:
    return _export_to(ctx, "csv", "sessions")


def op_export_hf(ctx: Ctx) -> dict[str, Any]:
    return _export_to(ctx, "hf", "transcripts")


def op_viewer(ctx: Ctx) -> dict[str, Any]:
    """The run page as a browser asks for it, through the real server (aiohttp on a
    thread, as `tests/report/test_viewer.py` runs it): the first page of sessions (with
    the leaderboard only for a small run: a larger run's summary is computed meanwhile in
    another process), a page in the middle of the run, the first page filtered by a
    violated label (empty until the summary is computed), the summary JSON (which waits
    for it), then the run page and the label filter again. `first_peak_mb` is the peak
    RSS when the first page has come back; `peak_mb` is the viewer process's (the
    summary's own process is not counted: its memory is `summarise`'s)."""
    from therapygym.report.viewer import PER_PAGE, ViewerServer

    with ViewerServer(ctx.store) as viewer:

        def fetch(path: str) -> tuple[float, str]:
            """The page's time and text; a JSON body is read and counted, not kept (the
            client runs in this process: holding it would count against the server)."""
            t0 = time.perf_counter()
            with urllib.request.urlopen(viewer.url + path, timeout=3600) as r:
                if not path.startswith("api/"):
                    return time.perf_counter() - t0, r.read().decode()
                size = sum(len(chunk) for chunk in iter(lambda: r.read(MB), b""))
            return time.perf_counter() - t0, f"{size / MB:.0f} MB"

        first_s, page = fetch(f"runs/{RUN_ID}")
        first_peak = peak_mb()
        middle = max(1, ctx.sessions // PER_PAGE // 2)
        middle_s, _ = fetch(f"runs/{RUN_ID}?page={middle}")
        label_s, _ = fetch(f"runs/{RUN_ID}?label=any")
        board_s, summary_size = fetch(f"api/runs/{RUN_ID}")
        again_s, again = fetch(f"runs/{RUN_ID}")
        label_again_s, labelled = fetch(f"runs/{RUN_ID}?label=any")
    board = 'id="leaderboard-table"'
    listed = labelled.count('class="session-link"')
    return {
        "first_s": first_s,
        "first_peak_mb": first_peak,
        "middle_s": middle_s,
        "label_s": label_s,
        "summary_s": board_s,
        "again_s": again_s,
        "label_again_s": label_again_s,
        "page_mb": len(page.encode()) / MB,
        "detail": f"first page {first_s:.2f} s at {first_peak:.0f} MB peak "
        f"(leaderboard {'in it' if board in page else 'computing'}), page {middle} "
        f"{middle_s:.2f} s, label=any {label_s:.1f} s, summary JSON {board_s:.1f} s "
        f"({summary_size}), "
        f"again {again_s:.2f} s ({'with' if board in again else 'without'} leaderboard), "
        f"label=any again {label_again_s:.1f} s ({listed} sessions listed); "
        f"page {len(page.encode()) / 1024:.0f} KiB",
    }


@dataclass(frozen=True)
class Op:
    name: str
    run: Callable[[Ctx], dict[str, Any]]
    imports: tuple[str, ...]  # imported before the baseline: libraries are not data


OPS = {
    op.name: op
    for op in (
        Op("write", op_write, ("therapygym.store", "therapygym.patients.library")),
        Op("runs list", op_runs, ("therapygym.store",)),
        Op("resume check", op_resume, ("therapygym.store",)),
        Op("sessions", op_sessions, ("therapygym.store",)),
        Op("summarise", op_summarise, ("therapygym.summary", "scipy.stats")),
        Op("summary json", op_summary_json, ("therapygym.summary", "scipy.stats")),
        Op("export jsonl", op_export_jsonl, ("therapygym.report.exports",)),
        Op("export parquet", op_export_parquet,
           ("therapygym.report.exports", "pandas", "pyarrow.parquet")),
        Op("report html", op_report, ("therapygym.report.html", "scipy.stats")),
        Op("viewer run page", op_viewer, ("therapygym.report.viewer",)),
        Op("export csv", op_export_csv, ("therapygym.report.exports", "pandas")),
        Op("export scores parquet", op_export_scores_parquet,
           ("therapygym.report.exports", "pandas", "pyarrow.parquet")),
        Op("export sessions csv", op_export_sessions_csv, ("therapygym.report.exports", "pandas")),
        Op("export hf", op_export_hf, ("therapygym.report.exports", "pyarrow.parquet")),
    )
}  # fmt: skip


def peak_mb() -> float:
    """This process's peak RSS so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_s() -> float:
    """This process's CPU time (user + system): on a shared machine, where wall time
    depends on the other jobs, what the operation itself cost."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child(name: str, ctx: Ctx) -> None:
    """Run one operation and print its measurement as one JSON line."""
    op = OPS[name]
    for module in op.imports:
        importlib.import_module(module)
    baseline = peak_mb()
    cpu0 = cpu_s()
    t0 = time.perf_counter()
    extra = op.run(ctx)
    wall = time.perf_counter() - t0
    print(json.dumps({"op": name, "wall_s": wall, "cpu_s": cpu_s() - cpu0,
                      "baseline_mb": baseline, "peak_mb": peak_mb(), **extra}))  # fmt: skip


# -- the parent: one child per operation, tables ------------------------------------------


def measure(name: str, ctx: Ctx, timeout_s: float) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", name, "--store", str(ctx.store),
           "--out", str(ctx.out), "--sessions", str(ctx.sessions)]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return {"op": name, "error": f"timed out after {timeout_s:.0f} s"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return {"op": name, "error": tail[0]}
    row = json.loads(done.stdout.strip().splitlines()[-1])
    row["above_mb"] = row["peak_mb"] - row["baseline_mb"]
    return row


def bench(sessions: int, ops: list[str], workdir: Path, timeout_s: float) -> list[dict[str, Any]]:
    ctx = Ctx(store=workdir / f"store-{sessions}.sqlite", out=workdir, sessions=sessions)
    rows = []
    for name in ops:
        row = measure(name, ctx, timeout_s)
        row["sessions"] = sessions
        rows.append(row)
        got = row.get("error") or f"{row['wall_s']:.1f} s, peak {row['peak_mb']:.0f} MB"
        print(f"  {sessions} sessions, {name}: {got}", file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| operation | wall s | CPU s | peak RSS MB | baseline MB | RSS above baseline MB "
        "| detail |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['op']} | — | — | — | — | — | {r['error']} |")
            continue
        lines.append(
            f"| {r['op']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_mb']:.0f} | "
            f"{r['baseline_mb']:.0f} | {r['above_mb']:.0f} | {r['detail']} |"
        )
    return "\n".join(lines)


def slope_table(rows: list[dict[str, Any]], sizes: list[int], ops: list[str]) -> str:
    """RSS above baseline per N, and its least-squares slope in MB per 1,000 sessions."""
    head = " | ".join(f"{n:,} sessions" for n in sizes)
    lines = [f"| operation | {head} | MB per 1,000 sessions |",
             "|---|" + "---:|" * (len(sizes) + 1)]  # fmt: skip
    for name in ops:
        got = {r["sessions"]: r.get("above_mb") for r in rows if r["op"] == name}
        cells = " | ".join("—" if got.get(n) is None else f"{got[n]:.0f}" for n in sizes)
        pts = [(n / 1000, got[n]) for n in sizes if got.get(n) is not None]
        slope = "—"
        if len(pts) >= 2:
            mx = sum(x for x, _ in pts) / len(pts)
            my = sum(y for _, y in pts) / len(pts)
            den = sum((x - mx) ** 2 for x, _ in pts)
            slope = f"{sum((x - mx) * (y - my) for x, y in pts) / den:.1f}"
        lines.append(f"| {name} | {cells} | {slope} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="10000", help="N, or several: 2500,5000,10000")
    parser.add_argument("--ops", default=",".join(OPS), help="a comma-separated subset")
    parser.add_argument("--workdir", type=Path, help="keep the stores here (default: a tmp dir)")
    parser.add_argument(
        "--reuse", action="store_true", help="read the stores --workdir holds (no write)"
    )
    parser.add_argument("--timeout-s", type=float, default=3600, help="per operation")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Ctx(store=args.store, out=args.out, sessions=int(args.sessions)))
        return
    sizes = [int(x) for x in args.sessions.split(",")]
    ops = [x.strip() for x in args.ops.split(",")]
    if unknown := [x for x in ops if x not in OPS]:
        parser.error(f"unknown --ops {unknown}; known: {', '.join(OPS)}")
    if "write" not in ops and not args.reuse:
        parser.error("--ops needs write (or --reuse): every other operation reads the store")
    if args.reuse and (not args.workdir or "write" in ops):
        parser.error("--reuse reads the stores of --workdir, and --ops must leave write out")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for n in sizes:
            if args.reuse:
                if not (workdir / f"store-{n}.sqlite").exists():
                    parser.error(f"--reuse: no store-{n}.sqlite in {workdir}")
            else:
                for p in workdir.glob(f"store-{n}.sqlite*"):
                    p.unlink()
            rows += bench(n, ops, workdir, args.timeout_s)
    load = os.getloadavg()
    for n in sizes:
        print(f"\n### {n:,} sessions (Python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
              f"load average at the end {load[0]:.2f} {load[1]:.2f} {load[2]:.2f})\n")  # fmt: skip
        print(table([r for r in rows if r["sessions"] == n]))
    if len(sizes) > 1:
        print("\n### RSS above baseline (MB) by number of sessions\n")
        print(slope_table(rows, sizes, ops))
    if args.json:
        meta = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "sizes": sizes,
                "loadavg": load}  # fmt: skip
        args.json.write_text(json.dumps({"machine": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
