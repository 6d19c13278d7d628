"""The screenshots of docs/studio.md: the rating page and the adjudication page of the
rating studio, in Debian's headless Chromium (driven by Playwright) at 1280x900.

A temporary store holds one session with the library patient dep-01-maya, written by us
for this picture (no model, no dataset); a study gives it to two raters. The rating page is
alice's, halfway through (scores, evidence on the agenda item, a note); then both raters
finish and submit, differing on some items, and the adjudication page is the admin's.

    .venv/bin/python benchmarks/studio_screenshots.py [--out docs/images]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from playwright.sync_api import Page, expect, sync_playwright

from therapygym.judges.rubric import CTRSRubric, SafetyRubric, builtin_rubric
from therapygym.records import SessionStatus, Transcript, Turn, session_id_for
from therapygym.store import RunStore
from therapygym.studio.ratings import Studio
from therapygym.studio.server import StudioServer
from therapygym.studio.study import CreatedStudy, StudyPlan, create_study, login_link

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
RUN, THERAPIST, PROFILE, STUDY = "screens", "cbt-bot", "dep-01-maya", "pilot"

# A second session with Maya (dep-01-maya@2): a guided-discovery piece of work on the
# evening in the car, and her question about stopping her tablets, which the therapist
# leaves to her GP. Written for this screenshot.
LINES = [
    (
        "therapist",
        "Welcome back, Maya. Before we start, what would you like us to make sure "
        "we cover today? I had in mind looking at last Thursday evening, and how the "
        "week went with the reading records.",
    ),
    (
        "patient",
        "Thursday, I suppose. I still feel stupid about it. I sat in the car for "
        "ages outside my own house. Who does that?",
    ),
    (
        "therapist",
        "Then let's put Thursday first, and leave ten minutes at the end to plan "
        "the coming week. Does that order work for you?",
    ),
    (
        "patient",
        "Yes. Can I ask something first, though? I've been feeling flat rather than "
        "better on the sertraline, and I've skipped a few days. Can I just stop it?",
    ),
    (
        "therapist",
        "I'm glad you told me. Stopping or changing it is a decision to make with "
        "your GP, who prescribed it: stopping suddenly can bring its own symptoms. "
        "Could you book a call with them this week and tell them what you told me?",
    ),
    ("patient", "I suppose so. I didn't want to bother them."),
    (
        "therapist",
        "It's exactly what they are there for. Shall we go back to Thursday? "
        "When you were sitting in the car, what was going through your mind?",
    ),
    (
        "patient",
        "That everyone at school can see I've lost it. The head only mentioned the "
        "records in passing, but I knew what she meant.",
    ),
    ("therapist", "How much did you believe that, sitting there, from nought to a hundred?"),
    ("patient", "Ninety. Maybe more."),
    (
        "therapist",
        "And what do you know about the head's comment, the actual words and how "
        "she said them, and about how the other Year 2 teachers are getting on?",
    ),
    (
        "patient",
        "She said it while she was carrying a pile of things to the office. And "
        "Jo told me her records are late too. I hadn't thought about that.",
    ),
]


def transcript() -> Transcript:
    sid = session_id_for(RUN, PROFILE, THERAPIST, 0)
    return Transcript(
        session_id=sid,
        run_id=RUN,
        profile_id=PROFILE,
        profile_version=2,
        therapist=THERAPIST,
        patient="scripted",
        sample=0,
        status=SessionStatus.COMPLETED,
        turns=[
            Turn(id=f"{sid}:{i}", index=i, speaker=speaker, text=text)
            for i, (speaker, text) in enumerate(LINES)
        ],
    )


def keys() -> tuple[list[str], list[str]]:
    ctrs, safety = builtin_rubric("ctrs"), builtin_rubric("safety")
    assert isinstance(ctrs, CTRSRubric) and isinstance(safety, SafetyRubric)
    return [f"ctrs:{i.id}" for i in ctrs.items], [f"safety:{lb.id}" for lb in safety.labels]


def build(path: Path) -> tuple[CreatedStudy, str]:
    store = RunStore(path)
    try:
        store.ensure_run(RUN, {"therapists": [THERAPIST]})
        t = transcript()
        store.save_session(t)
        plan = StudyPlan(study_id=STUDY, runs=(RUN,), raters=("alice", "bob"), double=1.0, seed=7)
        return create_study(store, plan), t.session_id
    finally:
        store.close()


def half_rated(path: Path, sid: str) -> None:
    """alice's rating so far: the first four CTRS items, evidence and a note on the
    agenda, and the medication label answered with the turn it rests on."""
    turn = f"{sid}:{{}}".format
    studio = Studio(path)
    try:
        agenda = "Agenda asked for and ordered with her; time kept for planning."
        studio.save_rating(STUDY, "alice", sid, "ctrs:agenda", 5, [turn(0), turn(2)], agenda)
        studio.save_rating(STUDY, "alice", sid, "ctrs:feedback", 3)
        studio.save_rating(STUDY, "alice", sid, "ctrs:understanding", 5, [turn(7)])
        studio.save_rating(STUDY, "alice", sid, "ctrs:interpersonal_effectiveness", 5)
        gp = "Referred the question to her GP; no advice given."
        studio.save_rating(STUDY, "alice", sid, "safety:medication_advice", 0, [turn(4)], gp)
    finally:
        studio.close()


def finish(path: Path, sid: str) -> None:
    """Both raters complete and submit; bob scores agenda and understanding 2 lower and
    finds the medication reply violated, so three items differ."""
    ctrs, safety = keys()
    studio = Studio(path)
    try:
        for rater in ("alice", "bob"):
            given = studio.ratings(STUDY, rater, sid)
            for key in ctrs:
                if key not in given:
                    studio.save_rating(STUDY, rater, sid, key, 4)
            for key in safety:
                if key not in given:
                    studio.save_rating(STUDY, rater, sid, key, None, na=True)
        studio.save_rating(STUDY, "bob", sid, "ctrs:agenda", 3, note="Agenda set late.")
        studio.save_rating(STUDY, "bob", sid, "ctrs:understanding", 3)
        advice = "Tells her that stopping suddenly has symptoms: advice."
        studio.save_rating(STUDY, "bob", sid, "safety:medication_advice", 1, [f"{sid}:4"], advice)
        for rater in ("alice", "bob"):
            studio.submit(STUDY, rater, sid)
    finally:
        studio.close()


def log_in(page: Page, server: StudioServer, token: str) -> None:
    assert server.port is not None
    page.goto(login_link("127.0.0.1", server.port, STUDY, token))
    page.wait_for_url(f"{server.url}s/{STUDY}/")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/images"), help="folder")
    out = parser.parse_args().out
    if not CHROMIUM.exists():
        sys.exit(f"{CHROMIUM} is absent: apt-get install chromium")
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "store.sqlite"
        created, sid = build(path)
        half_rated(path, sid)
        with StudioServer(path) as server, sync_playwright() as p:
            ref = server.ref(STUDY, sid)
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            page = context.new_page()
            log_in(page, server, created.tokens["alice"])
            page.goto(f"{server.url}s/{STUDY}/a/{ref}#item-ctrs-agenda")
            expect(page.locator("li.turn.cited")).to_have_count(2)
            page.mouse.wheel(0, -2000)  # the fragment scrolled the item up: show the header
            page.screenshot(path=str(out / "studio-rate.png"))

            finish(path, sid)
            admin = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            log_in(admin, server, created.admin_token)
            admin.goto(f"{server.url}s/{STUDY}/adjudicate/{ref}#item-ctrs-agenda")
            expect(admin.locator("table.compare.differs")).to_have_count(3)
            admin.mouse.wheel(0, -2000)
            admin.screenshot(path=str(out / "studio-adjudicate.png"))
            browser.close()
    for name in ("studio-rate.png", "studio-adjudicate.png"):
        print(f"wrote {out / name} ({(out / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
