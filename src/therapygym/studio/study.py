"""Setting up a study: which stored sessions are rated, by whom, in what order.

Sessions are sampled stratified by therapist and patient severity (the severity of the
library profile a session was played from, "unknown" where there is none), so a study of a
few dozen sessions still covers every therapist at every severity in proportion. A
`double` fraction of them, chosen the same stratified way, goes to two raters: the pairs of
raters take turns, so every pair shares about as many sessions (what the pairwise ceiling
needs). The rest go one each to the rater with the least work, and among those to the
one with the least in that stratum, so loads end as even as the pairs leave them. Each
rater gets their sessions in an order of their own, drawn from the seed, so order effects
(fatigue, drift) do not line up with therapists.

Tokens are drawn with `secrets` (256 bits), stored as their SHA-256 and returned in clear
only once, in `CreatedStudy`: the store never holds them.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from therapygym.calibration.bench import BenchRating, read_bench_jsonl
from therapygym.errors import ConfigError, TherapygymError
from therapygym.judges.rubric import Rubric, builtin_rubric, parse_rubric_ref
from therapygym.patients.audit import ProfileBook
from therapygym.records import FINISHED
from therapygym.store import RunStore, SessionHead

RATER_NAME = r"[a-z0-9][a-z0-9_.-]{0,39}"
STUDY_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
ADMIN = "admin"
CONSENSUS = "consensus"
RESERVED_RATERS = (ADMIN, CONSENSUS)
STUDY_RUBRICS = ("ctrs", "safety")  # what a clinician rates in the studio
UNKNOWN_SEVERITY = "unknown"
TOKEN_BYTES = 32  # 256 bits; at least 128 are asked for


class StudyError(TherapygymError):
    """A study that cannot be created or found, or a request it cannot serve."""


def hash_token(token: str) -> str:
    """What the store keeps of a token: its SHA-256, hex. A token is 256 random bits, so
    no salt or slow hash is needed: nothing can be guessed from the hash."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def login_link(host: str, port: int, study_id: str, token: str) -> str:
    """The link a rater (or the admin) opens: the token rides in the fragment, which a
    browser never sends, so it cannot reach a server log; the page posts it once."""
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/s/{study_id}/login#token={token}"


class StudyPlan(BaseModel):
    """What `studio create` asks for. `rubrics` are refs (`ctrs`, `safety@1.0`), resolved
    to the shipped versions when the study is created; `n` caps the sessions sampled (all
    finished sessions of the runs by default); `practice` is a bench file whose rated
    dialogues become a practice round of `practice_n` sessions, rated by everyone."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    study_id: str
    runs: tuple[str, ...] = Field(min_length=1)
    rubrics: tuple[str, ...] = STUDY_RUBRICS
    raters: tuple[str, ...] = Field(min_length=1)
    double: float = Field(0.0, ge=0.0, le=1.0)
    seed: int = 0
    n: int | None = Field(None, ge=1)
    practice: Path | None = None
    practice_n: int = Field(3, ge=1)

    @field_validator("study_id")
    @classmethod
    def _study_name(cls, value: str) -> str:
        if not re.fullmatch(STUDY_NAME, value):
            raise ValueError(
                f"'{value}': a study id is letters, digits, '.', '_' or '-' (up to 64), "
                "starting with a letter or digit (it is part of every link)"
            )
        return value

    @field_validator("rubrics")
    @classmethod
    def _known_rubrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("give at least one rubric (ctrs, safety)")
        kinds = []
        for ref in value:
            kind, version = parse_rubric_ref(ref)
            if kind not in STUDY_RUBRICS:
                raise ValueError(
                    f"rubric '{ref}': the studio rates {' and '.join(STUDY_RUBRICS)} "
                    "(optionally @version)"
                )
            try:
                builtin_rubric(kind, version)
            except ConfigError as err:
                raise ValueError(str(err)) from None
            kinds.append(kind)
        if len(set(kinds)) < len(kinds):
            raise ValueError("each rubric once (one version of ctrs, one of safety)")
        return value

    @field_validator("raters")
    @classmethod
    def _distinct_raters(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for rater in value:
            if not re.fullmatch(RATER_NAME, rater):
                raise ValueError(
                    f"rater '{rater}': a rater is named in lower-case letters, digits, '.', "
                    "'_' or '-' (up to 40), starting with a letter or digit"
                )
        if reserved := sorted(set(value) & set(RESERVED_RATERS)):
            raise ValueError(f"'{reserved[0]}' is reserved; name the rater otherwise")
        if len(set(value)) < len(value):
            twice = next(r for r in value if value.count(r) > 1)
            raise ValueError(f"rater '{twice}' is named twice")
        return value

    @model_validator(mode="after")
    def _pairs_possible(self) -> StudyPlan:
        if self.double > 0 and len(self.raters) < 2:
            raise ValueError(
                f"double {self.double} needs at least two raters to share sessions; "
                "give more raters or --double 0"
            )
        return self

    @classmethod
    def parse(cls, **fields: Any) -> StudyPlan:
        """A plan from the command line's values, or one line saying what is wrong, naming
        the option as `studio create` spells it."""
        try:
            return cls(**fields)
        except ValidationError as err:
            problems = []
            for e in err.errors():
                message = e["msg"].removeprefix("Value error, ")
                if not e["loc"]:  # a check across options
                    problems.append(message)
                    continue
                option = _OPTIONS.get(str(e["loc"][0]), str(e["loc"][0]))
                got = e.get("input")
                shown = f" (got {got!r:.60})" if e["type"] != "value_error" else ""
                problems.append(f"{option}: {message}{shown}")
            raise StudyError("studio create: " + "; ".join(problems)) from None

    def resolved_rubrics(self) -> list[Rubric]:
        return [builtin_rubric(*parse_rubric_ref(ref)) for ref in self.rubrics]


_OPTIONS = {
    "study_id": "STUDY",
    "runs": "--run",
    "rubrics": "--rubric",
    "raters": "--raters",
    "double": "--double",
    "seed": "--seed",
    "n": "--n",
    "practice": "--practice",
    "practice_n": "--practice-n",
}


class CreatedStudy(BaseModel):
    """A created study: the only place its tokens exist in clear. Print them once."""

    model_config = ConfigDict(frozen=True)

    study_id: str
    tokens: dict[str, str]
    admin_token: str
    sessions: int
    double: int
    practice: int
    strata: dict[str, int]


class _Candidate(BaseModel):
    session_id: str
    stratum: str  # "therapist / severity"


def _candidates(store: RunStore, runs: Sequence[str]) -> list[_Candidate]:
    """The finished sessions of `runs` with their stratum, in the store's stable order."""
    book = ProfileBook.from_paths()
    out = []
    for run_id in dict.fromkeys(runs):  # a run named twice is sampled once
        store.run(run_id)  # an unknown run: one line naming it and the recent ones
        heads: list[SessionHead] = [
            h for h in store.session_heads(run_id) if h.status.value in FINISHED
        ]
        for h in heads:
            profile = book.get(h.profile_id, h.profile_version)
            severity = profile.severity.value if profile is not None else UNKNOWN_SEVERITY
            out.append(_Candidate(session_id=h.session_id, stratum=f"{h.therapist} / {severity}"))
    return out


def allocate(sizes: dict[str, int], n: int) -> dict[str, int]:
    """`n` split over strata in proportion to their sizes (largest remainder, ties to the
    stratum first in name order), never more than a stratum holds."""
    total = sum(sizes.values())
    if n >= total:
        return dict(sizes)
    exact = {k: n * size / total for k, size in sizes.items()}
    counts = {k: math.floor(v) for k, v in exact.items()}
    left = n - sum(counts.values())
    for k in sorted(sizes, key=lambda k: (counts[k] - exact[k], k))[:left]:
        counts[k] += 1
    return counts


def _stratified(
    rng: np.random.Generator, by_stratum: dict[str, list[str]], n: int
) -> dict[str, list[str]]:
    quota = allocate({k: len(v) for k, v in by_stratum.items()}, n)
    return {
        k: sorted(rng.choice(sorted(ids), size=quota[k], replace=False).tolist())
        for k, ids in sorted(by_stratum.items())
        if quota[k]
    }


def half_up(x: float) -> int:
    return math.floor(x + 0.5)


class Assignment(BaseModel):
    rater: str
    session_id: str
    phase: str
    position: int


def assign(
    sampled: dict[str, list[str]], raters: Sequence[str], double: float, seed: int
) -> tuple[list[tuple[str, tuple[str, ...]]], int]:
    """Each sampled session (by stratum) with its raters: `double` of them (rounded half
    up) with a pair, pairs taken in turn in a seeded order; the others with the rater who
    has the least work overall, then in that stratum. Returns the sessions with their
    raters, in stratum order, and the number double-rated."""
    rng = np.random.default_rng([seed, 1])
    n = sum(len(v) for v in sampled.values())
    k = half_up(double * n) if len(raters) >= 2 else 0
    doubles = {s for ids in _stratified(rng, sampled, k).values() for s in ids}
    pairs = list(itertools.combinations(raters, 2))
    pairs = [pairs[i] for i in rng.permutation(len(pairs))] if pairs else []
    load = dict.fromkeys(raters, 0)
    out: list[tuple[str, tuple[str, ...]]] = []
    shared = [s for stratum in sorted(sampled) for s in sampled[stratum] if s in doubles]
    for i, session_id in enumerate(rng.permutation(shared).tolist() if shared else []):
        pair = pairs[i % len(pairs)]
        for r in pair:
            load[r] += 1
        out.append((session_id, pair))
    tiebreak = {r: i for i, r in enumerate(rng.permutation(list(raters)).tolist())}
    for stratum in sorted(sampled):
        here = dict.fromkeys(raters, 0)
        for session_id, pair in out:
            if session_id in sampled[stratum]:
                for r in pair:
                    here[r] += 1
        singles = [s for s in sampled[stratum] if s not in doubles]
        for session_id in rng.permutation(singles).tolist() if singles else []:
            rater = min(raters, key=lambda r: (load[r], here[r], tiebreak[r]))
            here[rater] += 1
            load[rater] += 1
            out.append((session_id, (rater,)))
    return out, k


def orders(
    given: list[tuple[str, tuple[str, ...]]],
    practice: Sequence[str],
    raters: Sequence[str],
    seed: int,
) -> list[Assignment]:
    """Every rater's sessions in their own seeded order: the practice round first (the
    same sessions for everyone), then the study's."""
    out = []
    for index, rater in enumerate(raters):
        rng = np.random.default_rng([seed, 2, index])
        mine = sorted(s for s, who in given if rater in who)
        first = [practice[i] for i in rng.permutation(len(practice))] if practice else []
        then = [mine[i] for i in rng.permutation(len(mine))] if mine else []
        out += [
            Assignment(rater=rater, session_id=s, phase="practice", position=p)
            for p, s in enumerate(first)
        ]
        out += [
            Assignment(rater=rater, session_id=s, phase="study", position=len(first) + p)
            for p, s in enumerate(then)
        ]
    return out


def reference_values(rating: BenchRating, kinds: Sequence[str]) -> dict[str, Any]:
    """An expert's bench rating as studio values: `ctrs:<item>` 0-6, `safety:<label>` 1 / 0
    or "na" (null in the bench: not applicable), for the rubric kinds of the study."""
    values: dict[str, Any] = {}
    if "ctrs" in kinds:
        values |= {f"ctrs:{k}": v for k, v in rating.ctrs.items() if v is not None}
    if "safety" in kinds:
        values |= {f"safety:{k}": "na" if v is None else int(v) for k, v in rating.safety.items()}
    return values


def _practice(store: RunStore, plan: StudyPlan, kinds: Sequence[str]) -> dict[str, Any] | None:
    """Import `practice_n` rated dialogues of the practice bench as a run of their own and
    return what the plan keeps of them: the run, and each session's expert ratings."""
    if plan.practice is None:
        return None
    bench = read_bench_jsonl(plan.practice)
    usable = [
        d.id
        for d in bench.dialogues.values()
        if d.transcript is not None and any(reference_values(r, kinds) for r in d.human_ratings())
    ]
    if not usable:
        raise StudyError(
            f"--practice {plan.practice}: no dialogue has a transcript and expert ratings of "
            f"{' or '.join(kinds)} to serve as a reference"
        )
    size = min(plan.practice_n, len(usable))
    ids = set(np.random.default_rng([plan.seed, 3]).choice(sorted(usable), size, False).tolist())
    run_id = f"studio-{plan.study_id}-practice"
    store.ensure_run(
        run_id, {"kind": "studio-practice", "study": plan.study_id, "bench": bench.digest}
    )
    references: dict[str, list[dict[str, Any]]] = {}
    for t in bench.transcripts(run_id):
        dialogue = bench.dialogues[t.meta["bench_dialogue_id"]]
        if dialogue.id not in ids:
            continue
        store.save_session(t)
        references[t.session_id] = [
            {"rater": r.rater, "values": v}
            for r in dialogue.human_ratings()
            if (v := reference_values(r, kinds))
        ]
    return {
        "bench": str(plan.practice),
        "digest": bench.digest,
        "run": run_id,
        "references": references,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def create_study(store: RunStore, plan: StudyPlan) -> CreatedStudy:
    """Sample, assign and order the sessions, import the practice round, and write the
    study with its raters (tokens hashed) and assignments in one transaction."""
    with store.reading() as db:
        if db.execute("SELECT 1 FROM studies WHERE study_id = ?", (plan.study_id,)).fetchone():
            raise StudyError(
                f"study '{plan.study_id}' already exists in {store.path}; pick another id"
            )
    candidates = _candidates(store, plan.runs)
    if not candidates:
        raise StudyError(f"runs {', '.join(plan.runs)} have no finished sessions to rate")
    if plan.n is not None and plan.n > len(candidates):
        raise StudyError(
            f"--n {plan.n}: runs {', '.join(plan.runs)} have {len(candidates)} finished "
            "sessions; ask for that many or fewer"
        )
    by_stratum: dict[str, list[str]] = {}
    for c in candidates:
        by_stratum.setdefault(c.stratum, []).append(c.session_id)
    rng = np.random.default_rng([plan.seed, 0])
    sampled = _stratified(rng, by_stratum, plan.n or len(candidates))
    given, n_double = assign(sampled, plan.raters, plan.double, plan.seed)
    rubrics = plan.resolved_rubrics()
    kinds = [r.id for r in rubrics]
    practice = _practice(store, plan, kinds)
    practice_ids = sorted(practice["references"]) if practice else []
    assignments = orders(given, practice_ids, plan.raters, plan.seed)
    stored_plan = {
        "runs": list(plan.runs),
        "rubrics": [{"ref": r.ref, "fingerprint": r.fingerprint} for r in rubrics],
        "raters": list(plan.raters),
        "double": plan.double,
        "seed": plan.seed,
        "n": plan.n,
        "sessions": sum(len(v) for v in sampled.values()),
        "double_rated": n_double,
        "strata": {k: len(v) for k, v in sampled.items()},
        "practice": practice,
    }
    tokens = {r: secrets.token_urlsafe(TOKEN_BYTES) for r in plan.raters}
    admin_token = secrets.token_urlsafe(TOKEN_BYTES)
    with store.transaction() as db:
        db.execute(
            "INSERT INTO studies (study_id, created_at, plan) VALUES (?, ?, ?)",
            (plan.study_id, _now(), json.dumps(stored_plan, sort_keys=True)),
        )
        db.executemany(
            "INSERT INTO study_raters (study_id, rater, token_hash, is_admin) VALUES (?,?,?,?)",
            [(plan.study_id, r, hash_token(t), 0) for r, t in tokens.items()]
            + [(plan.study_id, ADMIN, hash_token(admin_token), 1)],
        )
        db.executemany(
            "INSERT INTO study_assignments (study_id, rater, session_id, phase, position)"
            " VALUES (?,?,?,?,?)",
            [(plan.study_id, a.rater, a.session_id, a.phase, a.position) for a in assignments],
        )
    return CreatedStudy(
        study_id=plan.study_id,
        tokens=tokens,
        admin_token=admin_token,
        sessions=stored_plan["sessions"],
        double=n_double,
        practice=len(practice_ids),
        strata=stored_plan["strata"],
    )
