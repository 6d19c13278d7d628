"""What the studio's HTTP tests share: a store holding a finished run (written directly, no
model) whose therapist names, run id and profile ids are distinctive strings a test can
search every page for, a study over it, and a small cookie-keeping client."""

from __future__ import annotations

import http.cookiejar
import json
import re
import sqlite3
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from therapygym.calibration.bench import BenchRating, BenchTurn
from therapygym.judges.rubric import CTRSRubric, SafetyRubric, builtin_rubric
from therapygym.records import SessionStatus, Transcript, Turn, session_id_for
from therapygym.store import RunStore
from therapygym.studio.study import CreatedStudy, StudyPlan, create_study

RUN = "run-hidden-7f3a"
THERAPISTS = ("therapist-secret-alpha", "therapist-secret-beta")
PROFILES = ("profile-hidden-one", "profile-hidden-two")
MODEL = "model-secret-gpt-x"  # in each transcript's meta, as a backend would record it
SCRIPT = "<script>alert(1)</script>"
SECRETS = (RUN, *THERAPISTS, *PROFILES, MODEL)
CTRS = builtin_rubric("ctrs")
SAFETY = builtin_rubric("safety")
assert isinstance(CTRS, CTRSRubric) and isinstance(SAFETY, SafetyRubric)
ITEMS = [f"ctrs:{i.id}" for i in CTRS.items]
LABELS = [f"safety:{lb.id}" for lb in SAFETY.labels]
CSRF = re.compile(r'<meta name="csrf-token" content="([^"]+)">')
REF = re.compile(r'href="/s/[^/"]+/a/([0-9a-f]{16})"')


def transcript(profile: str, therapist: str, sample: int, turns: int = 6) -> Transcript:
    sid = session_id_for(RUN, profile, therapist, sample)
    said = []
    for i in range(turns):
        speaker = "patient" if i % 2 == 0 else "therapist"
        text = f"{speaker} line {i} of session {sample}"
        if i == 3:
            text = f"Try this: {SCRIPT} & breathe"
        said.append(Turn(id=f"{sid}:{i}", index=i, speaker=speaker, text=text))
    return Transcript(
        session_id=sid, run_id=RUN, profile_id=profile, profile_version=1, therapist=therapist,
        patient="scripted", sample=sample, status=SessionStatus.COMPLETED, turns=said,
        meta={"therapist_model": MODEL},
    )  # fmt: skip


def build_store(path: Path, samples: int) -> None:
    """A store with run RUN: every therapist with every profile, `samples` times."""
    store = RunStore(path)
    store.ensure_run(RUN, {"therapists": list(THERAPISTS), "model": MODEL})
    for therapist in THERAPISTS:
        for profile in PROFILES:
            for sample in range(samples):
                store.save_session(transcript(profile, therapist, sample))
    store.close()


def practice_bench(path: Path) -> Path:
    """A bench file with one expert-rated dialogue (the practice round's reference)."""
    turns = tuple(
        BenchTurn(speaker="patient" if i % 2 == 0 else "therapist", text=f"practice line {i}")
        for i in range(4)
    )
    rating = BenchRating(
        dialogue_id="practice-1",
        rater="expert-1",
        transcript=turns,
        ctrs={i.removeprefix("ctrs:"): 5 for i in ITEMS},
        safety={lb.removeprefix("safety:"): False for lb in LABELS},
    )
    path.write_text(rating.model_dump_json() + "\n", encoding="utf-8")
    return path


def make_study(
    store_path: Path, raters: tuple[str, ...], *, double: float, study_id: str = "pilot",
    practice: Path | None = None,
) -> CreatedStudy:  # fmt: skip
    store = RunStore(store_path)
    try:
        plan = StudyPlan(
            study_id=study_id, runs=(RUN,), raters=raters, double=double, seed=7,
            practice=practice, practice_n=1,
        )  # fmt: skip
        return create_study(store, plan)
    finally:
        store.close()


def count_ratings(store_path: Path) -> int:
    with sqlite3.connect(store_path) as db:
        return int(db.execute("SELECT COUNT(*) FROM study_ratings").fetchone()[0])


def full_rating(value: int = 4) -> list[dict[str, Any]]:
    """Every item answered: CTRS at `value`, safety labels not violated."""
    return [{"item": i, "value": value} for i in ITEMS] + [
        {"item": lb, "value": 0} for lb in LABELS
    ]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


@dataclass
class Client:
    """One browser: its own cookies, the CSRF token of the last page it loaded."""

    base: str  # "http://127.0.0.1:PORT"
    study: str = "pilot"
    csrf: str | None = None
    jar: http.cookiejar.CookieJar = field(default_factory=http.cookiejar.CookieJar)

    def __post_init__(self) -> None:
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def url(self, *parts: str) -> str:
        return "/".join([self.base, "s", self.study, *parts])

    def request(
        self, url: str, *, method: str = "GET", body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:  # fmt: skip
        req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
        try:
            with self.opener.open(req, timeout=30) as r:
                reply = Reply(r.status, dict(r.headers), r.read().decode())
        except urllib.error.HTTPError as e:
            reply = Reply(e.code, dict(e.headers), e.read().decode())
        if found := CSRF.search(reply.text):
            self.csrf = found.group(1)
        return reply

    def get(self, *parts: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request(self.url(*parts), headers=headers)

    def post(
        self, *parts: str, json_body: Any = None, csrf: str | bool | None = True,
        headers: dict[str, str] | None = None,
    ) -> Reply:  # fmt: skip
        """POST JSON; `csrf=True` sends the page's token, a string sends that one, None
        sends no token header."""
        sent = {"Content-Type": "application/json", **(headers or {})}
        token = self.csrf if csrf is True else csrf
        if isinstance(token, str):
            sent["X-CSRF-Token"] = token
        body = json.dumps(json_body if json_body is not None else {}).encode()
        return self.request(self.url(*parts), method="POST", body=body, headers=sent)

    def login(self, token: str) -> Reply:
        reply = self.post("login", json_body={"token": token}, csrf=None)
        if reply.status == 200:
            self.get("")  # the home page: its CSRF token
        return reply

    def refs(self) -> list[str]:
        """The rater's assignments' refs, in their order (from the home page)."""
        return REF.findall(self.get("").text)

    def rate(self, ref: str, item: str, value: int | None, **more: Any) -> Reply:
        return self.post("api", "a", ref, json_body={"item": item, "value": value, **more})
