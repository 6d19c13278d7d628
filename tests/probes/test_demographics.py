"""Demographic robustness: counterfactual profiles (fields, names, the pronoun map), the plan
and its sessions, the paired statistics by hand, and one run end to end against the local
OpenAI-compatible server with a judge whose scores depend on the patient's stated age."""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from judges.scripted import instance

from therapygym.errors import ConfigError
from therapygym.patients.library import load_profiles
from therapygym.patients.profile import CoreBelief, Demographics, PatientProfile, RiskCue
from therapygym.patients.simulator import LLMPatient
from therapygym.probes.counterfactual import (
    ATTRIBUTES,
    FIRST_PERSON_FIELDS,
    THIRD_PERSON_FIELDS,
    counterfactual,
    load_demographics,
    not_applicable,
    parse_name,
    variants,
)
from therapygym.probes.demographics import (
    DemographicsPlan,
    IntakePatient,
    demographic_report,
    demographics_judge_plan,
    demographics_transcripts,
    intake_note,
    pair_seed,
    plan_units,
    run_demographics,
)
from therapygym.probes.pronouns import PRONOUNS, CounterfactualError, rewrite_pronouns
from therapygym.records import ScoreRecord, SessionConfig, SessionStatus, Transcript, Turn
from therapygym.runner import judge_run, plan_records
from therapygym.stats import mean_ci
from therapygym.store import RunStore, StoreError

LIBRARY = {p.id: p for p in load_profiles()}
DATA = load_demographics()
# A spread of the library: both binary genders, family-first names, a three-part name,
# risk cues, a narrative that names the patient.
SAMPLE = [
    "dep-02-emeka",
    "gad-01-priya",
    "dep-03-lan",
    "man-02-harpreet",
    "soc-02-wei",
    "sub-03-thabo",
    "lse-02-dimitris",
]
NARRATIVE = (
    "presenting_problem",
    "history",
    "situation",
    "coping_strategies",
    "emotions",
    "behaviours",
    "risk_cues",
    "opening_line",
    "core_beliefs",
    "intermediate_beliefs",
    "automatic_thoughts",
)


def dump(profile: PatientProfile, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    raw = profile.model_dump(mode="json", exclude={"id"})
    for name in drop:
        if name.startswith("demographics."):
            raw["demographics"].pop(name.split(".", 1)[1])
        else:
            raw.pop(name)
    return raw


def text_of(profile: PatientProfile) -> str:
    return str(profile.model_dump(mode="json", exclude={"id"}))


def has_word(word: str, text: str) -> bool:
    return re.search(r"(?<![\w\-])" + re.escape(word) + r"(?![\w\-])", text) is not None


def own_name(profile: PatientProfile) -> Any:
    found = DATA.pool_for_culture(profile.demographics.culture)
    return parse_name(profile.demographics.name, found[1] if found else None)


# ---------------------------------------------------------------- the data file


def test_data_file_loads_with_a_stable_ref_and_covers_the_library() -> None:
    assert DATA.ref.startswith("demographics@1.1#") and DATA.ref == load_demographics().ref
    assert DATA.values("age") == ["19", "34", "52", "71"]
    assert set(DATA.values("gender")) == {"woman", "man", "non-binary"}
    assert {"no-qualifications", "doctorate"} <= set(DATA.values("education"))
    assert len(DATA.values("culture")) >= 6 and len(DATA.values("name")) >= 6
    # every library profile's culture finds its own name pool (gender copies need one)
    missing = [p.id for p in LIBRARY.values() if DATA.pool_for_culture(p.demographics.culture)
               is None]  # fmt: skip
    assert missing == []
    assert DATA.pool_for_culture("Nigerian-British (Igbo), London")[0] == "igbo"  # type: ignore[index]
    assert DATA.pool_for_culture("Japanese-Brazilian (nikkei)")[0] == "brazilian"  # type: ignore[index]
    assert DATA.pool_for_culture("Moroccan-French")[0] == "arabic"  # type: ignore[index]


def test_bad_data_file_names_file_and_field(tmp_path: Path) -> None:
    raw = yaml.safe_load(
        (Path(__file__).parents[2] / "src/therapygym/probes/data/demographics.yaml").read_text()
    )
    raw["attributes"]["culture"]["mexican"]["pool"] = "atlantean"
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match=rf"demographics file {re.escape(str(path))}.*atlantean"):
        load_demographics(path)
    raw["attributes"]["culture"]["mexican"]["pool"] = "hispanic"
    raw["intake"] = "Name {name}, shoe size {shoe}"
    path.write_text(yaml.safe_dump(raw, allow_unicode=True))
    with pytest.raises(ConfigError, match="unknown placeholder"):
        load_demographics(path)


def test_every_text_field_of_the_schema_is_classified() -> None:
    """A text field added to the profile schema must be sorted into first or third person
    here, or counterfactuals would silently leave an old name or pronoun in it."""

    def texts(model: type, prefix: str = "") -> set[str]:
        out = set()
        for name, info in model.model_fields.items():  # type: ignore[attr-defined]
            ann = info.annotation
            if ann is str or typing.get_args(ann) == (str,):
                out.add(prefix + name)
        return out

    found = texts(PatientProfile) | texts(Demographics, "demographics.")
    found |= texts(RiskCue, "risk_cues.") | texts(CoreBelief, "core_beliefs.")
    handled = set(THIRD_PERSON_FIELDS) | set(FIRST_PERSON_FIELDS)
    handled |= {"id", "locale", "demographics.name", "demographics.gender", "demographics.pronouns"}
    assert found == handled


# ---------------------------------------------------------------- the pronoun map


@pytest.mark.parametrize(
    ("text", "source", "target", "expected"),
    [
        # her: possessive before a noun-ish word, object otherwise
        ("She called her mother.", "she/her", "he/him", "He called his mother."),
        ("Her husband told her to rest.", "she/her", "he/him", "His husband told him to rest."),
        ("Her father hit her and her brothers.", "she/her", "he/him",
         "His father hit him and his brothers."),
        ("He shouts at her, and once pushed her against the door.", "she/her", "he/him",
         "He shouts at him, and once pushed him against the door."),
        ("It made her eat; they let her go.", "she/her", "he/him",
         "It made him eat; they let him go."),
        ("She helped her mother.", "she/her", "he/him", "He helped his mother."),
        ("She raised him as her own.", "she/her", "he/him", "He raised him as his own."),
        ("He supports her emotionally.", "she/her", "he/him", "He supports him emotionally."),
        ("Caring for her elderly mother in her early thirties.", "she/her", "he/him",
         "Caring for his elderly mother in his early thirties."),
        ("Her 14-year-old stays home with her.", "she/her", "he/him",
         "His 14-year-old stays home with him."),
        ("whether her prayers for her had been accepted", "she/her", "they/them",
         "whether their prayers for them had been accepted"),
        # his: determiner, or a pronoun at the end of a clause
        ("The choice was his.", "he/him", "she/her", "The choice was hers."),
        ("It is his, not hers.", "he/him", "they/them", "It is theirs, not hers."),
        ("His wife pushed him to come.", "he/him", "she/her", "Her wife pushed her to come."),
        ("He blames himself.", "he/him", "she/her", "She blames herself."),
        ("She blames herself.", "she/her", "they/them", "They blame themself."),
        ("hers", "she/her", "he/him", "his"),
        # capitalisation and contractions
        ("HER phone; Her phone; her phone", "she/her", "he/him", "HIS phone; His phone; his phone"),
        ("SHE is here.", "she/her", "he/him", "HE is here."),
        ("She's tired and she'd said she'll go.", "she/her", "he/him",
         "He's tired and he'd said he'll go."),
        ("She's tired; she's been ill; she's never had help.", "she/her", "they/them",
         "They're tired; they've been ill; they've never had help."),
        ("She’s tired.", "she/her", "they/them", "They’re tired."),
        # singular they: the verb agrees, adverbs skipped, coordinated verbs follow
        ("She worries, he checks.", "she/her", "they/them", "They worry, he checks."),
        ("He still sends money home and has two jobs.", "he/him", "they/them",
         "They still send money home and have two jobs."),
        ("She is sure; she was ten; she does not; she watches; he goes.", "she/her",
         "they/them", "They are sure; they were ten; they do not; they watch; he goes."),
        ("She tries, and she dies a little.", "she/her", "they/them",
         "They try, and they die a little."),
        ("Does she know? Is she safe?", "she/her", "they/them", "Do they know? Are they safe?"),
        ("He lives alone, sleeps little and has no help.", "he/him", "they/them",
         "They live alone, sleep little and have no help."),
        ("Since his son, whom he raised, was killed.", "he/him", "they/them",
         "Since their son, whom they raised, was killed."),
        # note-style sentences: a later verb may belong to the unwritten subject
        ("Says he is fine and has no plan.", "he/him", "they/them",
         "Says they are fine and has no plan."),
        # quoted words are someone's own: left alone
        ('He said the partner "grabbed him" and "his arms hurt".', "he/him", "she/her",
         'She said the partner "grabbed him" and "his arms hurt".'),
        ('She said she "was never present".', "she/her", "they/them",
         'They said they "were never present".'),
        # other people's pronouns stay
        ("She woke her husband to ask if he looked pale.", "she/her", "he/him",
         "He woke his husband to ask if he looked pale."),
        ("She cares for her son", "she/her", "she/her", "She cares for her son"),
    ],
)  # fmt: skip
def test_rewrite_pronouns(text: str, source: str, target: str, expected: str) -> None:
    assert rewrite_pronouns(text, source, target) == expected


def test_rewrite_pronouns_refuses_they_as_source() -> None:
    with pytest.raises(CounterfactualError, match="singular and plural 'they'"):
        rewrite_pronouns("They said they would come.", "they/them", "she/her")
    with pytest.raises(CounterfactualError, match="unknown target"):
        rewrite_pronouns("She came.", "she/her", "xe/xem")


# ---------------------------------------------------------------- counterfactuals


@pytest.mark.parametrize("pid", SAMPLE)
def test_age_and_education_change_only_that_field(pid: str) -> None:
    base = LIBRARY[pid]
    older = counterfactual(base, "age", 71 if base.demographics.age != 71 else 19)
    assert older.id == f"{pid}_age_{older.demographics.age}" and older.version == base.version
    assert dump(older, drop=("demographics.age",)) == dump(base, drop=("demographics.age",))
    phd = counterfactual(base, "education", "doctorate")
    assert phd.demographics.education == "doctorate (PhD)"
    assert dump(phd, drop=("demographics.education",)) == dump(
        base, drop=("demographics.education",)
    )


@pytest.mark.parametrize("pid", SAMPLE)
@pytest.mark.parametrize(("attribute", "value"), [("name", "arabic"), ("culture", "polish")])
def test_name_and_culture_copies_change_only_the_name_and_culture(
    pid: str, attribute: Any, value: str
) -> None:
    base = LIBRARY[pid]
    copy = counterfactual(base, attribute, value)
    pool = DATA.pools["arabic" if attribute == "name" else "polish"]
    old, new = own_name(base), parse_name(copy.demographics.name, pool)
    assert copy.id == f"{pid}_{attribute}_{value}"
    assert new.given in pool.given["woman" if base.demographics.gender == "woman" else "man"]
    for word in {old.full, old.given, old.call, old.family}:  # no old name survives
        assert not has_word(word, text_of(copy)), word
    # undo the rename: everything else is the original, word for word
    back = text_of(copy)
    for a, b in [(new.full, old.full), (new.given, old.given), (new.family, old.family)]:
        back = re.sub(r"(?<![\w\-])" + re.escape(a) + r"(?![\w\-])", b, back)
    expected = dump(base)
    if attribute == "culture":
        assert copy.demographics.culture == "Polish"
        expected["demographics"]["culture"] = "Polish"
    assert back == str(expected)


def test_names_follow_each_cultures_order() -> None:
    lan = counterfactual(LIBRARY["dep-03-lan"], "gender", "man")
    assert re.fullmatch(r"Nguyen Van \w+", lan.demographics.name)  # family first, gendered middle
    harpreet = counterfactual(LIBRARY["man-02-harpreet"], "gender", "man")
    assert re.fullmatch(r"\w+ Singh Sandhu", harpreet.demographics.name)
    assert "Kaur" not in text_of(harpreet) and "Jaspal" not in harpreet.demographics.name
    dimitris = counterfactual(LIBRARY["lse-02-dimitris"], "gender", "woman")
    assert dimitris.demographics.name.endswith(" Papadopoulou")  # the surname's female form
    wei = counterfactual(LIBRARY["soc-02-wei"], "name", "english")
    assert not wei.demographics.name.startswith("Chen")  # given first in the English pool
    assert parse_name("Park Ji-woo", DATA.pools["korean"]).call == "Ji-woo"
    assert parse_name("Nguyen Thi Lan", DATA.pools["vietnamese"]).call == "Lan"


def test_names_are_stable_and_avoid_words_of_the_profile() -> None:
    emeka = LIBRARY["dep-02-emeka"]
    a = counterfactual(emeka, "gender", "woman")
    assert a == counterfactual(emeka, "gender", "woman")  # the same copy every time
    assert a.demographics.name.split()[0] != "Ngozi"  # his wife's name is taken
    spread = {counterfactual(LIBRARY[p], "culture", "nigerian-yoruba").demographics.name
              for p in SAMPLE}  # fmt: skip
    assert len(spread) >= 4  # different bases get different names


def test_gender_copy_of_emeka_by_hand() -> None:
    base = LIBRARY["dep-02-emeka"]
    woman = counterfactual(base, "gender", "woman")
    d = woman.demographics
    assert woman.id == "dep-02-emeka_gender_woman" and woman.version == base.version
    assert (d.gender, d.pronouns) == ("woman", "she/her")
    given, family = d.name.split()
    assert family == "Okafor" and given in DATA.pools["igbo"].given["woman"]
    assert woman.presenting_problem.endswith("her wife pushed her to come.")
    assert woman.history.startswith("Grew up in Enugu as the first daughter,")
    assert "she still sends money home" in woman.history
    assert woman.situation.endswith(f"{given} said nothing, went to the bedroom and did not "
                                    "come out for the rest of the day.")  # fmt: skip
    assert woman.emotions[2] == "anger at herself (60%)"
    assert d.culture.endswith("active in her Pentecostal church")
    assert woman.risk_cues[0].disclosure.startswith(
        "Says quietly that sometimes she thinks the family would be better off with her life "
        "insurance than with her."
    )
    assert not has_word("Emeka", text_of(woman))
    # the patient's own words are not rewritten
    for field in ("core_beliefs", "intermediate_beliefs", "automatic_thoughts", "opening_line"):
        assert getattr(woman, field) == getattr(base, field)
    assert woman.core_beliefs[0].belief == "A man who cannot provide for his family is nothing."
    # nothing but the narrative text and the three demographics moved
    drop = (*NARRATIVE, "demographics.name", "demographics.gender", "demographics.pronouns",
            "demographics.culture")  # fmt: skip
    assert dump(woman, drop=drop) == dump(base, drop=drop)
    assert [(c.kind, c.turn, c.explicit) for c in woman.risk_cues] == [
        (c.kind, c.turn, c.explicit) for c in base.risk_cues
    ]


SOURCE_WORDS = {"she", "her", "hers", "herself", "he", "him", "his", "himself"}
TARGET_WORDS = {w for forms in PRONOUNS.values() for w in forms.values()}
PHRASE_WORDS = {"mother", "father", "parent", "daughter", "son", "child", "woman", "man", "person"}


@pytest.mark.parametrize("pid", SAMPLE)
@pytest.mark.parametrize("target", ["woman", "man", "non-binary"])
def test_gender_copies_change_only_pronouns_agreement_and_name(pid: str, target: str) -> None:
    base = LIBRARY[pid]
    if base.demographics.gender == target:
        assert not_applicable(base, "gender", target) == f"the profile is already {target}"
        return
    copy = counterfactual(base, "gender", target)
    old = own_name(base)
    drop = (*NARRATIVE, "demographics.name", "demographics.gender", "demographics.pronouns",
            "demographics.culture", "demographics.occupation", "demographics.education",
            "demographics.relationship_status")  # fmt: skip
    assert dump(copy, drop=drop) == dump(base, drop=drop)
    if target == "non-binary":  # keeps the name
        assert copy.demographics.name == base.demographics.name
    else:
        assert not has_word(old.call, text_of(copy)) and not has_word(old.given, text_of(copy))
    for field in ("core_beliefs", "intermediate_beliefs", "automatic_thoughts", "opening_line"):
        assert getattr(copy, field) == getattr(base, field)
    # third-person text: word by word, only pronouns, verb agreement, names, self phrases
    words = re.compile(r"[^\W\d_]+(?:['’\-][^\W\d_]+)*")
    new_name = set(copy.demographics.name.split())
    same = ("demographics.gender", "demographics.pronouns")
    before, after = str(dump(base, drop=same)), str(dump(copy, drop=same))
    a, b = words.findall(before), words.findall(after)
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        if x == y:
            continue
        ok = (
            (x.lower() in SOURCE_WORDS | {"she's", "he's", "she'd", "he'd", "she'll", "he'll"}
             and y.lower().split("'")[0].split("’")[0] in TARGET_WORDS)
            or (target == "non-binary" and y.lower() in (x.lower()[:-1], x.lower()[:-2],
                x.lower()[:-3] + "y", "are", "were", "have", "do", "aren't", "weren't",
                "haven't", "don't"))
            or (x in [*old.given.split(), old.family] and y in new_name)
            or (x.lower() in PHRASE_WORDS and y.lower() in PHRASE_WORDS)
            or (x, y) in {("woman", "man"), ("as", "as")}
        )  # fmt: skip
        assert ok, (x, y)


@pytest.mark.parametrize(
    ("pid", "value", "reason"),
    [
        ("eat-01-robin", "woman", "gender 'non-binary' (they/them): only woman"),
        ("ins-01-ren", "woman", "gender 'trans man'"),
        ("rel-01-lucia", "man", "gender 'trans woman'"),
        ("ins-02-gloria", "man", "sex-specific biology ('menopause')"),
        ("soc-01-kit", "man", "gender 'non-binary'"),
        ("gad-01-priya", "woman", "already woman"),
    ],
)
def test_gender_copies_that_cannot_be_made_say_why(pid: str, value: str, reason: str) -> None:
    base = LIBRARY[pid]
    assert reason in (not_applicable(base, "gender", value) or "")
    with pytest.raises(CounterfactualError, match=re.escape(reason)):
        counterfactual(base, "gender", value)


def test_identity_terms_flag_a_narrative_about_gender() -> None:
    base = LIBRARY["dep-02-emeka"]
    raw = base.model_dump(mode="json")
    raw["history"] += " He came out as trans at 40."
    changed = PatientProfile.model_validate(raw)
    assert "gender identity ('trans')" in (not_applicable(changed, "gender", "woman") or "")
    kirra = LIBRARY["grf-01-kirra"]  # "went back out to see the next client" is no coming out
    assert not_applicable(kirra, "gender", "man") is None


def test_self_phrases_follow_the_gender() -> None:
    daniela = counterfactual(LIBRARY["ang-01-daniela"], "gender", "man")
    assert daniela.demographics.relationship_status.startswith("single father; his ex-partner")
    kirra = counterfactual(LIBRARY["grf-01-kirra"], "gender", "non-binary")
    assert "Wiradjuri person" in kirra.demographics.culture


def test_unknown_attribute_or_value() -> None:
    with pytest.raises(ValueError, match="unknown age value '33'"):
        counterfactual(LIBRARY["dep-02-emeka"], "age", 33)
    with pytest.raises(ValueError, match="unknown attribute"):
        not_applicable(LIBRARY["dep-02-emeka"], "height", "tall")  # type: ignore[arg-type]


def test_same_background_is_not_a_counterfactual() -> None:
    emeka = LIBRARY["dep-02-emeka"]
    made, skipped = variants(emeka, ("culture", "name"), {"culture": ("nigerian-yoruba",)})
    assert [v.attribute for v in made] == [None, "culture", *["name"] * 8]
    thabo = LIBRARY["trm-02-marcus"]  # African-American: that name pool is his own
    assert "already from the african-american pool" in (
        not_applicable(thabo, "name", "african-american") or ""
    )
    assert skipped == []


# ---------------------------------------------------------------- the plan and its sessions


def test_plan_validation_and_record() -> None:
    plan = DemographicsPlan(
        run_id="d", therapists=("t",), profiles=("dep-02-emeka@1",), attributes=("age",),
        values={"age": [19, 71]},
    )  # fmt: skip
    assert plan.values == {"age": ("19", "71")}
    record = plan.record(DATA)
    assert "run_id" not in record and record["data_ref"] == DATA.ref
    assert record["intake"] is True and record["attributes"] == ["age"]
    with pytest.raises(ValueError, match="attributes not in the plan"):
        DemographicsPlan(run_id="d", therapists=("t",), profiles=("x@1",), attributes=("age",),
                         values={"gender": ["woman"]})  # fmt: skip
    with pytest.raises(ValueError, match="must not repeat"):
        DemographicsPlan(run_id="d", therapists=("t",), profiles=("x@1",),
                         attributes=("age", "age"))  # fmt: skip
    assert DemographicsPlan(run_id="d", therapists=("t",), profiles=("x@1",)).attributes == (
        ATTRIBUTES
    )


def test_plan_units_pair_variants_with_one_seed() -> None:
    profiles = [LIBRARY["dep-02-emeka"], LIBRARY["eat-01-robin"]]
    emeka = profiles[0].version
    plan = DemographicsPlan(
        run_id="d", therapists=("t1", "t2"), samples=2,
        profiles=tuple(f"{p.id}@{p.version}" for p in profiles), attributes=("gender", "age"),
        values={"age": ("52", "71")},
    )  # fmt: skip
    units, skipped = plan_units(plan, profiles)
    # emeka: reference + woman, non-binary, age 71 (already 52); robin: reference + 52, 71
    assert len(units) == (4 + 3) * 2 * 2
    assert {(s.base_profile, s.value) for s in skipped} == {
        ("dep-02-emeka", "man"), ("dep-02-emeka", "52"),
        ("eat-01-robin", "woman"), ("eat-01-robin", "man"), ("eat-01-robin", "non-binary"),
    }  # fmt: skip
    groups: dict[tuple[str, str, int], set[int]] = {}
    schedules: dict[tuple[str, str, int], set[str]] = {}
    for u in units:
        key = (u.meta["base_profile"], u.therapist, u.sample)
        groups.setdefault(key, set()).add(u.seed)
        schedules.setdefault(key, set()).add(str(u.meta["cue_schedule"]))
        drawn = u.variant.base.cue_turns(u.seed)
        assert [e["turn"] for e in u.meta["cue_schedule"]] == drawn
        assert u.seed == pair_seed("d", u.variant.base.id, u.therapist, u.sample)
        assert u.meta["reference"] is (u.variant.attribute is None)
        assert (
            u.meta["cues_tracked"] is True
            and u.meta["locale"] == u.variant.base.locale
            and u.meta["data_ref"] == DATA.ref
        )
    assert all(len(seeds) == 1 for seeds in groups.values())
    assert all(len(drawn) == 1 for drawn in schedules.values())  # one cue schedule per pair
    assert len({next(iter(s)) for s in groups.values()}) == len(groups)  # distinct per unit
    assert len({u.session_id for u in units}) == len(units)
    ref = next(u for u in units if u.meta["reference"] and u.variant.base.id == "dep-02-emeka")
    assert ref.meta["attribute"] is None and ref.variant.profile.id == "dep-02-emeka"
    with pytest.raises(ValueError, match=f"version {emeka}, the plan says {emeka + 1}"):
        plan_units(plan.model_copy(update={"profiles": (f"dep-02-emeka@{emeka + 1}",)}), profiles)
    with pytest.raises(ValueError, match="not among the profiles"):
        plan_units(plan, profiles[:1])


def test_intake_note_states_the_attributes() -> None:
    older = counterfactual(LIBRARY["dep-02-emeka"], "age", 71)
    note = intake_note(older)
    assert note.startswith("[Intake form. Name: Emeka Okafor. Age: 71. Gender: man (he/him).")
    assert "Education: HND in business studies.]" in note


async def test_intake_note_opens_the_first_message_only(recording_model: Any) -> None:
    profile = LIBRARY["dep-02-emeka"]
    patient = IntakePatient(
        LLMPatient(profile, recording_model("Fine."), cue_seed=0), intake_note(profile)
    )
    assert patient.label == "llm-patient:recording"
    first = await patient.respond([], seed=1, config=SessionConfig())
    assert first.text == f"{intake_note(profile)}\n\n{profile.opening_line}"
    turns = [Turn(id="s:0", index=0, speaker="patient", text=first.text),
             Turn(id="s:1", index=1, speaker="therapist", text="Welcome.")]  # fmt: skip
    later = await patient.respond(turns, seed=2, config=SessionConfig())
    assert later.text == "Fine."


ITEMS = [
    "agenda", "feedback", "understanding", "interpersonal_effectiveness", "collaboration",
    "pacing", "guided_discovery", "focus_on_key_cognitions", "strategy_for_change",
    "application_of_techniques", "homework",
]  # fmt: skip


def ctrs(session: str, score: int) -> ScoreRecord:
    return ScoreRecord(
        score_id=f"{session}-c", session_id=session, judge="j", rubric_id="ctrs",
        rubric_version="1.0", prompt_fingerprint="f", sample=0,
        result={"items": {i: {"score": score, "rationale": "", "evidence": []} for i in ITEMS}},
    )  # fmt: skip


def safety(session: str, *verdicts: str) -> ScoreRecord:
    labels = {f"label_{k}": {"verdict": v, "severity": "low" if v == "yes" else "none",
                             "evidence": []} for k, v in enumerate(verdicts)}  # fmt: skip
    return ScoreRecord(
        score_id=f"{session}-s", session_id=session, judge="j", rubric_id="safety",
        rubric_version="1.0", prompt_fingerprint="f", sample=0, result={"labels": labels},
    )  # fmt: skip


def session(sid: str, base: str, sample: int = 0, attribute: str | None = None,
            value: str | None = None, therapist: str = "T",
            status: SessionStatus = SessionStatus.COMPLETED) -> Transcript:  # fmt: skip
    return Transcript(
        session_id=sid, run_id="r", profile_id=base if attribute is None else f"{base}_x",
        therapist=therapist, patient="p", sample=sample, status=status,
        meta={"base_profile": base, "attribute": attribute, "value": value,
              "reference": attribute is None, "cues_tracked": True, "data_ref": "demographics@t",
              "demographics": {"gender": "woman", "pronouns": "she/her"}},
    )  # fmt: skip


def synthetic() -> tuple[list[Transcript], list[ScoreRecord]]:
    """Three bases; A has two samples. Age 71: CTRS variant minus reference is -11 and 0 for
    A (mean -5.5), -22 for B, -11 for C. Safety: A +0.5 and 0 (mean 0.25), B not judged
    (dropped), C 0. Gender woman: A 0 (one base only), B's variant failed (dropped)."""
    t = [
        session("rA0", "A"), session("rA1", "A", 1), session("rB", "B"), session("rC", "C"),
        session("aA0", "A", 0, "age", "71"), session("aA1", "A", 1, "age", "71"),
        session("aB", "B", 0, "age", "71"), session("aC", "C", 0, "age", "71"),
        session("gA", "A", 0, "gender", "woman"),
        session("gB", "B", 0, "gender", "woman", status=SessionStatus.FAILED),
        # therapist U: one variant without its reference
        session("uA", "A", 0, "age", "71", therapist="U"),
        session("unrelated", "A"),  # no demographics meta below: ignored
    ]  # fmt: skip
    t[-1].meta = {}
    scores = {"rA0": 4, "rA1": 4, "rB": 5, "rC": 2, "aA0": 3, "aA1": 4, "aB": 3, "aC": 1,
              "gA": 4, "uA": 6}  # fmt: skip
    records = [ctrs(s, v) for s, v in scores.items()]
    records += [safety(s, "no", "no") for s in ("rA0", "rA1", "rB", "rC", "aA1", "aC", "gA")]
    records += [safety("aA0", "yes", "no")]
    return t, records


def test_report_by_hand() -> None:
    transcripts, records = synthetic()
    report = demographic_report(transcripts, records, seed=3)
    assert report.format == "therapygym.demographics/1" and report.run_ids == ["r"]
    assert report.data_refs == ["demographics@t"]
    assert [t.therapist for t in report.therapists] == ["T", "U"]

    age = report.comparison("T", "age", "71")
    assert age is not None and age.label == "71"
    c = age.ctrs_total
    assert (c.n_pairs, c.n_bases, c.dropped) == (4, 3, 0)
    assert c.variant_mean == pytest.approx((38.5 + 33 + 11) / 3)
    assert c.reference_mean == pytest.approx((44 + 55 + 22) / 3)
    assert c.difference.mean == pytest.approx((-5.5 - 22 - 11) / 3)
    ci = mean_ci([-5.5, -22.0, -11.0], seed=3)  # bases in id order
    assert (c.difference.low, c.difference.high, c.difference.n) == (ci.low, ci.high, 3)
    assert c.p_value == pytest.approx(0.25) == c.p_floor  # exact Wilcoxon, n = 3, all negative
    s = age.violation_share
    assert (s.n_pairs, s.n_bases, s.dropped) == (3, 2, 1)  # B's variant was not judged
    assert s.difference.mean == pytest.approx(0.125) and s.p_value == 1.0

    woman = report.comparison("T", "gender", "woman")
    assert woman is not None and woman.label == "woman (she/her)"
    assert (woman.ctrs_total.n_pairs, woman.ctrs_total.dropped) == (1, 1)  # B failed
    assert woman.ctrs_total.difference.mean == 0 and woman.ctrs_total.difference.low is None
    assert woman.ctrs_total.p_value is None and woman.ctrs_total.p_holm is None  # one base

    # Holm over the therapist's testable comparisons: 0.25 and 1.0 -> 0.5 and 1.0
    assert c.p_holm == pytest.approx(0.5) and s.p_holm == 1.0
    gap = report.largest_gap("T")
    assert gap is not None and (gap.attribute, gap.value) == ("age", "71")
    assert gap.difference == c.difference and gap.p_holm == pytest.approx(0.5)
    assert (gap.n_bases, gap.n_pairs) == (3, 4)

    orphan = report.comparison("U", "age", "71")
    assert orphan is not None and orphan.ctrs_total.dropped == 1
    assert orphan.ctrs_total.difference.mean is None and report.largest_gap("U") is None
    pair = next(p for p in report.pairs if p.session_id == "uA")
    assert pair.reference_session_id is None and pair.ctrs_total == 66

    assert len(report.pairs) == 7 and any("2/2^n" in n for n in report.notes)
    assert type(report).model_validate_json(report.model_dump_json()) == report


def test_largest_gap_ties_go_to_the_first_comparison() -> None:
    transcripts, records = synthetic()
    flipped = [r for r in records if r.session_id != "gA"] + [ctrs("gA", 3)]
    flipped = [r for r in flipped if r.session_id != "aA0"] + [ctrs("aA0", 4)]
    # age 71 now: A (0 + 0)/2 = 0, B -22, C -11 -> mean -11; gender woman: A -11 -> -11
    report = demographic_report(transcripts, flipped)
    gap = report.largest_gap("T")
    assert gap is not None and (gap.attribute, gap.value) == ("gender", "woman")  # name order
    assert gap.difference.mean == pytest.approx(-11)


# ---------------------------------------------------------------- end to end


def judge_by_age(body: dict[str, Any]) -> Any:
    """Therapist and patient calls get plain text; the judge scores CTRS 2 on every item when
    the transcript's intake note says the patient is 71, and 4 otherwise; no safety label is
    violated."""
    fmt = body.get("response_format")
    if not fmt:
        return "I see. Tell me more."
    prompt = " ".join(str(m.get("content", "")) for m in body["messages"])
    schema = fmt["json_schema"]["schema"]
    return instance(schema, schema, 2 if "Age: 71." in prompt else 4, "no")


async def test_demographics_run_end_to_end(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(judge_by_age)
    spec = server_spec(server)
    profiles = [LIBRARY["dep-02-emeka"], LIBRARY["gad-01-priya"]]
    plan = DemographicsPlan(
        run_id="demo", therapists=(spec,), patient_model=spec,
        profiles=tuple(f"{p.id}@{p.version}" for p in profiles), attributes=("age",),
        values={"age": (19, 71)}, session=SessionConfig(max_turns=4),
    )  # fmt: skip
    store = RunStore(tmp_path / "s.sqlite")
    ran = await run_demographics(plan, profiles, store, cache=None)
    assert (ran.planned, ran.completed, ran.failed) == (6, 6, 0)
    judged = await judge_run(store, "demo", demographics_judge_plan((spec,)), cache=None)
    assert judged.failed == 0 and judged.units == 12
    records = plan_records(store, "demo", judged)
    transcripts = demographics_transcripts(store, "demo")
    assert len(transcripts) == 6

    by_base: dict[str, list[Transcript]] = {}
    for t in transcripts:
        by_base.setdefault(t.meta["base_profile"], []).append(t)
    for base, group in by_base.items():
        assert sorted(str(t.meta["value"]) for t in group) == ["19", "71", "None"]
        assert len({t.seed for t in group}) == 1  # one seed for every variant of the unit
        assert group[0].seed == pair_seed("demo", base, spec, 0)
        for t in group:
            age = t.meta["demographics"]["age"]
            assert t.turns[0].text.startswith("[Intake form. Name: ")
            assert f"Age: {age}." in t.turns[0].text and len(t.turns) == 4
            assert t.meta["cues_tracked"] is True
    assert by_base["dep-02-emeka"][0].seed != by_base["gad-01-priya"][0].seed
    # the simulated patient was given the counterfactual profile
    first = [r["messages"][0] for r in server.requests]
    systems = [
        m["content"] for m in first if m["role"] == "system" and "role-playing" in m["content"]
    ]
    assert any("age 71;" in s for s in systems) and any("age 19;" in s for s in systems)

    report = demographic_report(transcripts, records)
    (who,) = report.therapists
    old, young = (
        report.comparison(who.therapist, "age", "71"),
        report.comparison(who.therapist, "age", "19"),
    )
    assert old is not None and young is not None
    assert (old.ctrs_total.n_pairs, old.ctrs_total.n_bases, old.ctrs_total.dropped) == (2, 2, 0)
    assert old.ctrs_total.difference.mean == -22  # 11 items x (2 - 4)
    assert old.ctrs_total.p_value == pytest.approx(0.5)  # the floor with two bases
    assert young.ctrs_total.difference.mean == 0 and young.ctrs_total.p_value == 1.0
    assert old.violation_share.difference.mean == 0
    assert who.largest_gap is not None and who.largest_gap.value == "71"
    assert who.largest_gap.difference.mean == -22 and who.largest_gap.p_holm == 1.0

    # a rerun finds everything done and calls nothing
    calls = len(server.requests)
    again = await run_demographics(plan, profiles, store, cache=None)
    rejudged = await judge_run(store, "demo", demographics_judge_plan((spec,)), cache=None)
    assert (again.skipped, again.completed, rejudged.skipped) == (6, 0, 12)
    assert len(server.requests) == calls

    # the plan is recorded: the same run id with other values is refused
    changed = plan.model_copy(update={"values": {"age": ("19",)}})
    with pytest.raises(StoreError, match="values"):
        await run_demographics(changed, profiles, store, cache=None)
    edited = DATA.model_copy(update={"version": "9.9"})  # another demographics file
    with pytest.raises(StoreError, match="data_ref"):
        await run_demographics(plan, profiles, store, cache=None, data=edited)
    assert len(server.requests) == calls
