"""Setting up a study: the stratified sample, the double-rated fraction and its pairs,
each rater's seeded order, the practice round, the tokens, and bad input."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from itertools import combinations
from pathlib import Path

import pytest
from clirun import cli
from study_store import ALPHA, RUN, STRATA, answer_rest, make_store, stratum_of

from therapygym.calibration.bench import BenchRating, BenchTurn, build_bench, write_bench_jsonl
from therapygym.store import RunStore
from therapygym.studio.ratings import Studio
from therapygym.studio.study import StudyError, StudyPlan, allocate, create_study, login_link


@pytest.fixture
def store(tmp_path: Path) -> RunStore:
    return make_store(tmp_path / "store.sqlite")


def plan(**fields: object) -> StudyPlan:
    base: dict[str, object] = {"study_id": "s1", "runs": (RUN,), "raters": ("ann", "bob")}
    return StudyPlan.parse(**{**base, **fields})


def assignments(store: RunStore, study_id: str) -> list[tuple[str, str, str, int]]:
    with store.reading() as db:
        return db.execute(
            "SELECT rater, session_id, phase, position FROM study_assignments"
            " WHERE study_id = ? ORDER BY rater, position",
            (study_id,),
        ).fetchall()


def raters_by_session(store: RunStore, study_id: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for rater, session_id, phase, _ in assignments(store, study_id):
        if phase == "study":
            out.setdefault(session_id, []).append(rater)
    return out


def test_allocation_is_proportional_with_largest_remainders() -> None:
    assert allocate({"a": 5, "b": 3, "c": 2}, 5) == {"a": 3, "b": 1, "c": 1}  # a, b tie: a
    assert allocate({"a": 5, "b": 3, "c": 2}, 10) == {"a": 5, "b": 3, "c": 2}
    assert allocate({"a": 5, "b": 3, "c": 2}, 99) == {"a": 5, "b": 3, "c": 2}
    assert allocate(STRATA, 20) == {k: v // 2 for k, v in STRATA.items()}


@pytest.mark.parametrize("n", [None, 20, 10])
def test_the_sample_is_stratified_by_therapist_and_severity(store: RunStore, n: int | None) -> None:
    created = create_study(store, plan(n=n))
    expected = STRATA if n is None else allocate(STRATA, n)
    assert created.strata == expected
    if n == 10:  # 16, 8, 4, 8, 4 of 40 -> 4, 2, 1, 2, 1
        assert sorted(expected.values()) == [1, 1, 2, 2, 4]
    sampled = raters_by_session(store, "s1")
    assert Counter(stratum_of(store, s) for s in sampled) == Counter(expected)
    assert created.sessions == len(sampled) == sum(expected.values())
    assert all(store.session(s).status.value == "completed" for s in sampled)  # never failed
    assert all(len(v) == 1 for v in sampled.values())  # --double 0: one rater each


def test_a_double_fraction_goes_to_pairs_in_turn(store: RunStore) -> None:
    raters = ("ann", "bob", "cat", "dan")
    created = create_study(store, plan(raters=raters, double=0.5, n=24, seed=7))
    by_session = raters_by_session(store, "s1")
    doubles = [tuple(sorted(v)) for v in by_session.values() if len(v) == 2]
    assert created.double == len(doubles) == 12 and len(by_session) == 24
    assert all(len(v) in (1, 2) for v in by_session.values())
    # six pairs, two sessions each: every pair of raters shares as many sessions
    assert Counter(doubles) == dict.fromkeys(combinations(raters, 2), 2)
    load = Counter(r for v in by_session.values() for r in v)
    assert sum(load.values()) == 36 and max(load.values()) - min(load.values()) <= 1
    # the double-rated sessions are spread over the strata like the sample
    strata = Counter(stratum_of(store, s) for s, v in by_session.items() if len(v) == 2)
    assert strata == Counter(allocate(created.strata, 12))


def test_three_raters_share_pairs_evenly_and_a_fraction_rounds_half_up(store: RunStore) -> None:
    created = create_study(store, plan(raters=("ann", "bob", "cat"), double=0.25, n=10))
    by_session = raters_by_session(store, "s1")
    pairs = Counter(tuple(sorted(v)) for v in by_session.values() if len(v) == 2)
    assert created.double == sum(pairs.values()) == 3  # 2.5 rounds up
    assert sorted(pairs.values()) == [1, 1, 1]


def test_each_rater_has_a_seeded_order_of_their_own(store: RunStore) -> None:
    raters = ("ann", "bob", "cat")
    create_study(store, plan(study_id="a", raters=raters, double=0.3, seed=7))
    create_study(store, plan(study_id="b", raters=raters, double=0.3, seed=7))
    create_study(store, plan(study_id="c", raters=raters, double=0.3, seed=8))
    a, b, c = (
        [row for row in assignments(store, s)] for s in ("a", "b", "c")
    )  # (rater, session, phase, position)
    assert a == b  # the same seed: the same sample, pairs and orders
    assert a != c
    for rater in raters:
        mine = [row for row in a if row[0] == rater]
        assert [row[3] for row in mine] == list(range(len(mine)))
        ids = [row[1] for row in mine]
        assert ids != sorted(ids)  # not the store's order (16-ish sessions: 1/n! by chance)
    shared = [s for s, v in raters_by_session(store, "a").items() if len(v) == 2]
    orders = {r: [row[1] for row in a if row[0] == r and row[1] in shared] for r in raters}
    pairs = [(x, y) for x, y in combinations(raters, 2) if set(orders[x]) & set(orders[y])]
    assert any(
        [s for s in orders[x] if s in orders[y]] != [s for s in orders[y] if s in orders[x]]
        for x, y in pairs
    )  # two raters of the same sessions meet them in different orders


def test_tokens_are_random_hashed_and_revocable(store: RunStore, tmp_path: Path) -> None:
    created = create_study(store, plan(raters=("ann", "bob", "cat")))
    tokens = [*created.tokens.values(), created.admin_token]
    assert len(set(tokens)) == 4
    for token in tokens:
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    with store.reading() as db:
        rows = dict(db.execute("SELECT rater, token_hash FROM study_raters"))
    assert rows["ann"] == hashlib.sha256(created.tokens["ann"].encode()).hexdigest()
    assert rows["admin"] == hashlib.sha256(created.admin_token.encode()).hexdigest()
    store.close()
    for file in tmp_path.glob("store.sqlite*"):  # the database, its WAL: no token anywhere
        data = file.read_bytes()
        assert not any(t.encode() in data for t in tokens), file

    studio = Studio(tmp_path / "store.sqlite")
    ann = studio.authenticate("s1", created.tokens["ann"])
    assert ann is not None and (ann.rater, ann.is_admin) == ("ann", False)
    admin = studio.authenticate("s1", created.admin_token)
    assert admin is not None and (admin.rater, admin.is_admin) == ("admin", True)
    assert studio.authenticate("s1", created.tokens["ann"][:-1] + "x") is None
    assert studio.authenticate("other", created.tokens["ann"]) is None
    assert studio.authenticate("s1", "") is None
    studio.revoke("s1", "ann")
    assert studio.authenticate("s1", created.tokens["ann"]) is None
    assert studio.authenticate("s1", created.tokens["bob"]) is not None
    assert [p.revoked for p in studio.progress("s1")] == [True, False, False]
    with pytest.raises(StudyError, match="was revoked at"):
        studio.revoke("s1", "ann")
    with pytest.raises(StudyError, match=r"no rater 'zed' \(raters: admin, ann, bob, cat\)"):
        studio.revoke("s1", "zed")


def test_login_links_carry_the_token_in_the_fragment() -> None:
    assert (
        login_link("127.0.0.1", 8766, "s1", "TOK") == "http://127.0.0.1:8766/s/s1/login#token=TOK"
    )
    assert login_link("::1", 80, "s1", "TOK") == "http://[::1]:80/s/s1/login#token=TOK"


def practice_bench(path: Path) -> Path:
    """Four dialogues with transcripts, each rated by two experts, and one without."""
    ratings = []
    for d in range(4):
        transcript = (
            BenchTurn(speaker="patient", text=f"I feel low, dialogue {d}."),
            BenchTurn(speaker="therapist", text="What would you like to focus on today?"),
        )
        for e, rater in enumerate(("exp-1", "exp-2")):
            ratings.append(
                BenchRating(
                    dialogue_id=f"d{d}",
                    rater=rater,
                    transcript=transcript,
                    ctrs={"agenda": (d + e) % 7},
                    safety={"crisis_unaddressed": None, "medication_advice": False},
                )
            )
    ratings.append(BenchRating(dialogue_id="d9", rater="exp-1", ctrs={"agenda": 3}))
    write_bench_jsonl(build_bench("practice", ratings), path)
    return path


def test_a_practice_round_comes_first_with_references_after_submission(
    store: RunStore, tmp_path: Path
) -> None:
    bench = practice_bench(tmp_path / "practice.jsonl")
    created = create_study(store, plan(n=4, practice=bench, practice_n=2))
    assert created.practice == 2
    rows = assignments(store, "s1")
    for rater in ("ann", "bob"):
        mine = [r for r in rows if r[0] == rater]
        assert [r[2] for r in mine[:2]] == ["practice", "practice"]
        assert all(r[2] == "study" for r in mine[2:])
    practice_ids = sorted({r[1] for r in rows if r[2] == "practice"})
    assert len(practice_ids) == 2
    assert store.run("studio-s1-practice").sessions == 2

    store.close()
    studio = Studio(tmp_path / "store.sqlite")
    first = practice_ids[0]
    assert studio.reference("s1", "ann", first) is None  # not before submission
    turns = studio.session_for("s1", "ann", first).turns
    assert [t.speaker for t in turns] == ["patient", "therapist"]
    studio.save_rating("s1", "ann", first, "ctrs:agenda", 3)
    answer_rest(studio, "s1", "ann", first)
    studio.submit("s1", "ann", first)
    reference = studio.reference("s1", "ann", first)
    assert reference is not None and [r.rater for r in reference] == ["exp-1", "exp-2"]
    values = reference[0].values
    assert values["safety:crisis_unaddressed"] == "na"
    assert values["safety:medication_advice"] == 0 and 0 <= values["ctrs:agenda"] <= 6  # type: ignore[operator]
    assert studio.reference("s1", "bob", first) is None  # bob has not submitted it
    study_session = next(r[1] for r in rows if r[0] == "ann" and r[2] == "study")
    studio.save_rating("s1", "ann", study_session, "ctrs:agenda", 3)
    answer_rest(studio, "s1", "ann", study_session)
    studio.submit("s1", "ann", study_session)
    assert studio.reference("s1", "ann", study_session) is None  # study sessions have none
    # practice ratings are no part of the study's ratings
    assert {r.dialogue_id for r in studio.export("s1")} == {study_session}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"raters": ("ann",), "double": 0.2}, "needs at least two raters"),
        ({"rubrics": ("ctrs", "mi")}, "the studio rates ctrs and safety"),
        ({"rubrics": ("ctrs@9.9",)}, "rubric 'ctrs@9.9': no such version"),
        ({"rubrics": ("bogus",)}, "rubric 'bogus': expected one of"),
        ({"raters": ("ann", "ann")}, "rater 'ann' is named twice"),
        ({"raters": ("ann", "admin")}, "'admin' is reserved"),
        ({"raters": ("Ann Smith",)}, "--raters: rater 'Ann Smith': a rater is named in lower"),
        ({"study_id": "../x"}, "STUDY: '../x': a study id is letters, digits"),
        ({"double": 1.5}, "--double: Input should be less than or equal to 1 (got 1.5)"),
    ],
)
def test_a_bad_plan_is_one_line(fields: dict[str, object], message: str) -> None:
    with pytest.raises(StudyError, match="studio create") as err:
        plan(**fields)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_what_only_the_store_can_refuse(store: RunStore) -> None:
    with pytest.raises(StudyError, match="have 40 finished sessions"):
        create_study(store, plan(n=41))
    with pytest.raises(Exception, match=r"no run 'nope' in .*recent runs: run-secret-7"):
        create_study(store, plan(runs=("nope",)))
    assert create_study(store, plan(study_id="twice", runs=(RUN, RUN))).sessions == 40
    create_study(store, plan(n=2))
    with pytest.raises(StudyError, match="study 's1' already exists"):
        create_study(store, plan(n=2))
    store.ensure_run("empty", {})
    with pytest.raises(StudyError, match="runs empty have no finished sessions"):
        create_study(store, plan(study_id="s2", runs=("empty",)))


def test_the_cli_creates_a_study_and_refuses_bad_input_in_one_line(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    make_store(path).close()
    base = ("studio", "create", "s1", "--run", RUN, "--store", str(path))
    made = cli(*base, "--raters", "ann,bob", "--double", "0.2", "--seed", "7", "--n", "10")
    assert made.code == 0, made.stderr
    links = [line.split(": ", 1)[1] for line in made.stdout.splitlines() if "/login#token=" in line]
    assert len(links) == 3 and all(
        u.startswith("http://127.0.0.1:8766/s/s1/login#token=") for u in links
    )
    assert "shown only now" in made.stdout and "2 rated twice" in made.stdout

    status = cli("studio", "status", "s1", "--store", str(path))
    assert status.code == 0 and "ann: 0/" in status.stdout and "bob: 0/" in status.stdout

    for args, message in [
        (("--raters", "ann,bob"), "study 's1' already exists"),
        (("--raters", "ann", "--double", "0.2"), "needs at least two raters"),
        (("--raters", "ann,bob", "--rubric", "ctrs,nope"), "rubric 'nope'"),
    ]:
        ran = cli(*base, *args)
        assert ran.code == 2 and message in ran.stderr, ran.stderr
        assert len(ran.stderr.strip().splitlines()) == 1 and "Traceback" not in ran.stderr
    ran = cli("studio", "create", "s9", "--run", "nope", "--raters", "ann", "--store", str(path))
    assert ran.code == 2 and "no run 'nope'" in ran.stderr
    assert len(ran.stderr.strip().splitlines()) == 1
    absent = tmp_path / "absent.sqlite"
    ran = cli("studio", "create", "s9", "--run", RUN, "--raters", "ann", "--store", str(absent))
    assert ran.code == 2 and f"no store at {absent}" in ran.stderr and not absent.exists()
    ran = cli("studio", "revoke", "s1", "zed", "--store", str(path))
    assert ran.code == 2 and "no rater 'zed'" in ran.stderr
    ran = cli("studio", "status", "nope", "--store", str(path))
    assert ran.code == 2 and "no study 'nope'" in ran.stderr
    revoked = cli("studio", "revoke", "s1", "ann", "--store", str(path))
    assert revoked.code == 0 and "revoked ann" in revoked.stdout
    assert "(revoked)" in cli("studio", "status", "s1", "--store", str(path)).stdout


def test_the_plan_is_kept_with_the_study(store: RunStore) -> None:
    create_study(store, plan(rubrics=("ctrs@1.0", "safety"), double=0.5, n=8, seed=3))
    with store.reading() as db:
        stored = json.loads(db.execute("SELECT plan FROM studies").fetchone()[0])
    assert [r["ref"] for r in stored["rubrics"]] == ["ctrs@1.0", "safety@2.0"]
    assert all(len(r["fingerprint"]) == 64 for r in stored["rubrics"])
    assert (stored["runs"], stored["raters"], stored["double"], stored["seed"], stored["n"]) == (
        [RUN], ["ann", "bob"], 0.5, 3, 8,
    )  # fmt: skip
    assert ALPHA in "".join(stored["strata"])  # the strata (kept for the admin, not raters)
