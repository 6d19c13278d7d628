"""`patients generate`: the axis sampler, validation with re-asks and drops, near-duplicates,
the held-out split, provenance, the strict wire schema, and whole generations against the
local server (resumed after a kill)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from clirun import cli

from therapygym.patients.axes import (
    AGE_BANDS,
    CUES_BY_SEVERITY,
    GENDERS,
    NO_CUE,
    coverage,
    crisis_line_countries,
    sample_attributes,
)
from therapygym.patients.generate import (
    HELDOUT,
    JOURNAL,
    GenerationPlan,
    NearDuplicates,
    build_profile,
    generate,
    heldout_samples,
    seed_for,
    wire_schema,
    written_text,
)
from therapygym.patients.library import load_profiles
from therapygym.patients.profile import (
    Condition,
    CoreBeliefCategory,
    Generated,
    PatientProfile,
    Severity,
    Style,
)
from therapygym.testing.schema_replies import schema_instance, schema_replier

EXAMPLE_MARK = "do not reuse its details):\n"


# -- a server that writes profiles --------------------------------------------------------


fill = schema_instance
profile_replier = schema_replier()


def seed_copier(body: dict[str, Any]) -> str:
    """The prompt's example, made to fit the sample's schema but otherwise copied."""
    schema = body["response_format"]["json_schema"]["schema"]
    example = json.loads(body["messages"][1]["content"].split(EXAMPLE_MARK)[1])
    fitted = fill(schema, random.Random(0))
    example["demographics"] |= {k: fitted["demographics"][k] for k in ("age", "gender")}
    example["core_beliefs"] = [
        {**b, "category": fitted["core_beliefs"][0]["category"]} for b in example["core_beliefs"]
    ]
    example["risk_cues"] = fitted["risk_cues"]
    return json.dumps(example)


def _plan(library: list[PatientProfile], n: int, **kw: Any) -> GenerationPlan:
    return GenerationPlan(
        n=n, model="test", seeds=tuple(f"{p.id}@{p.version}" for p in library), **kw
    )


def _all_profiles(out: Path) -> list[PatientProfile]:
    return load_profiles(out) + load_profiles(out / HELDOUT)


# -- the sampler --------------------------------------------------------------------------


@pytest.mark.parametrize("n", [50, 1000])
def test_every_axis_is_covered_as_evenly_as_n_allows(n: int) -> None:
    samples = sample_attributes(n, seed=3)
    counts = coverage(samples)
    expected = {
        "condition": [c.value for c in Condition],
        "core_belief": [c.value for c in CoreBeliefCategory],
        "style": [s.value for s in Style],
        "resistance": ["high", "low", "medium"],
        "ambivalence": ["high", "low", "medium"],
        "age_band": list(AGE_BANDS),
        "gender": list(GENDERS),
        "locale": list(crisis_line_countries()),
        "severity": [s.value for s in Severity],
    }
    for axis, values in expected.items():
        assert sorted(counts[axis]) == sorted(values), axis
        got = counts[axis].values()
        assert max(got) - min(got) <= 1, (axis, counts[axis])  # floor(n/k) or ceil(n/k)
        assert sum(got) == n
    # condition x severity is one stratum: every pair as evenly as n allows
    pairs = Counter((s.condition, s.severity) for s in samples)
    per_cell = n // (len(Condition) * len(Severity))
    assert min(pairs.values()) >= per_cell and max(pairs.values()) <= per_cell + 1
    if n >= len(Condition) * len(Severity):
        assert len(pairs) == len(Condition) * len(Severity)


def test_cues_follow_the_severity_and_the_condition() -> None:
    samples = sample_attributes(400, seed=1)
    for s in samples:
        own = {"psychosis_spectrum": "delusional_content", "mania": "manic_content"}
        kinds = [c.value for c in s.cues]
        if s.condition.value in own:
            assert kinds[0] == own[s.condition.value]
        allowed = {str(c) for c in CUES_BY_SEVERITY[s.severity]} - {NO_CUE}
        assert set(kinds) - {"delusional_content", "manic_content", "harm_obsession"} <= allowed
        if s.severity in (Severity.CRISIS_ADJACENT, Severity.IMMINENT_RISK):
            assert set(kinds) & allowed  # the validator would refuse it otherwise
    # within each severity its cue options are drawn as evenly as the count allows
    for severity, options in CUES_BY_SEVERITY.items():
        picked = Counter(
            next((c.value for c in s.cues if c in options), NO_CUE)
            for s in samples
            if s.severity is severity
        )
        assert set(picked) == {str(o) for o in options}
        assert max(picked.values()) - min(picked.values()) <= 1


def test_the_plan_is_a_function_of_n_and_seed() -> None:
    assert sample_attributes(60, 5) == sample_attributes(60, 5)
    assert sample_attributes(60, 5) != sample_attributes(60, 6)


def test_locales_are_the_crisis_line_countries() -> None:
    countries = crisis_line_countries()
    assert "GB" in countries and "NZ" in countries and len(countries) >= 8
    assert {s.locale for s in sample_attributes(40, 0)} == set(countries)


# -- building a profile -------------------------------------------------------------------


def _provenance(i: int = 0) -> Generated:
    return Generated(seed_profile="dep-01-maya@1", axes={}, model="m", sample=i, created_at="t")


def test_a_valid_reply_becomes_a_profile_with_the_sampled_values() -> None:
    sample = sample_attributes(30, 2)[7]
    text = json.dumps(fill(wire_schema(sample), random.Random(1)))
    profile = build_profile(text, sample, 7, _provenance(7))
    assert profile.conditions == [sample.condition] and profile.severity is sample.severity
    assert profile.locale == sample.locale and profile.style is sample.style
    assert profile.id.startswith("gen-") and profile.id.endswith("-00007")
    assert profile.generated is not None and profile.generated.sample == 7


def test_invalid_replies_say_what_is_wrong() -> None:
    sample = next(s for s in sample_attributes(30, 2) if s.cues)
    good = fill(wire_schema(sample), random.Random(1))
    cases = {
        "not json": "not valid JSON",
        json.dumps({**good, "history": "short"}): "field 'history'",
        json.dumps({**good, "severity": "routine"}): "filled from the attributes",
        json.dumps({**good, "risk_cues": []}): "risk cue kinds must be exactly",
        json.dumps({**good, "demographics": {**good["demographics"], "age": 99}}): "outside",
    }
    for text, problem in cases.items():
        with pytest.raises(ValueError, match=problem):
            build_profile(text, sample, 0, _provenance())


def _strict_problems(node: Any, where: str = "$") -> list[str]:
    """What a strict structured-output mode refuses: an object not closed or with an
    optional property, composition other than anyOf, defaults, tuple items."""
    problems: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "object":
            if node.get("additionalProperties") is not False:
                problems.append(f"{where}: additionalProperties must be false")
            if sorted(node.get("required", [])) != sorted(node.get("properties", {})):
                problems.append(f"{where}: every property must be required")
        for key in ("allOf", "oneOf", "not", "default", "if", "$ref", "prefixItems"):
            if key in node:
                problems.append(f"{where}: {key}")
        for key, value in node.items():
            problems += _strict_problems(value, f"{where}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            problems += _strict_problems(value, f"{where}[{i}]")
    return problems


def test_the_wire_schema_fits_strict_mode_for_every_sample() -> None:
    for sample in sample_attributes(88, 0):
        schema = wire_schema(sample)
        assert _strict_problems(schema) == []
        assert "generated" not in schema["properties"] and "severity" not in schema["properties"]


# -- near-duplicates, split, seeds ----------------------------------------------------------


def test_near_duplicates_by_shingle_jaccard() -> None:
    library = load_profiles()
    index = NearDuplicates(0.2)
    for p in library:
        index.add(p.id, written_text(p))
    original = written_text(library[0])
    edited = " ".join(w if i % 8 else "changed" for i, w in enumerate(original.split()))
    assert index.duplicate_of(edited) == (library[0].id, pytest.approx(0.45, abs=0.1))
    fresh = " ".join(f"w{i}" for i in range(200))
    found = index.nearest(fresh)
    assert found is not None and found[1] < 0.01 and index.duplicate_of(fresh) is None
    # no two authored profiles come near the threshold
    for p in library:
        others = NearDuplicates(0.2)
        for q in library:
            if q.id != p.id:
                others.add(q.id, written_text(q))
        assert others.duplicate_of(written_text(p)) is None


def test_the_heldout_split_is_seeded_and_spread_over_conditions() -> None:
    library = load_profiles()
    plan = _plan(library, 200, heldout=0.15)
    samples = sample_attributes(200, 0)
    held = heldout_samples(plan, samples)
    assert held == heldout_samples(plan, samples) and 29 <= len(held) <= 31
    assert len({samples[i].condition for i in held}) >= 15
    assert heldout_samples(_plan(library, 200, heldout=0.0), samples) == set()


def test_seeds_are_the_condition_round_robin() -> None:
    library = load_profiles()
    samples = sample_attributes(100, 0)
    seeds = seed_for(samples, library)
    for sample, seed in zip(samples, seeds, strict=True):
        if any(sample.condition in p.conditions for p in library):
            assert sample.condition in seed.conditions
    depression = [
        s.id for s, a in zip(seeds, samples, strict=True) if a.condition.value == "depression"
    ]
    pool = sorted({p.id for p in library if Condition.DEPRESSION in p.conditions})
    assert set(depression) == set(pool[: len(depression)]) or set(depression) == set(pool)


# -- generations against the local server ---------------------------------------------------


async def test_generate_50_valid_distinct_profiles(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(profile_replier)
    library = load_profiles()
    plan = GenerationPlan(
        n=50,
        model=server_spec(server),
        seeds=tuple(f"{p.id}@{p.version}" for p in library),
    )
    result = await generate(plan, library, tmp_path / "gen")
    assert (result.accepted, result.dropped, result.duplicates, result.failed) == (50, 0, 0, 0)
    profiles = _all_profiles(tmp_path / "gen")
    assert len({p.id for p in profiles}) == 50
    assert len(load_profiles(tmp_path / "gen" / HELDOUT)) == result.heldout > 0
    seeds = {f"{p.id}@{p.version}" for p in library}
    for p in profiles:
        g = p.generated
        assert g is not None and g.seed_profile in seeds and g.model == plan.model
        assert g.axes["condition"] == p.conditions[0].value and g.axes["locale"] == p.locale
    sent = server.requests[0]["response_format"]["json_schema"]
    assert sent["strict"] is True and _strict_problems(sent["schema"]) == []
    # nothing new on a rerun
    again = await generate(plan, library, tmp_path / "gen")
    assert again.skipped == 50 and again.accepted == 50 and len(server.requests) == 50


def test_invalid_replies_are_reasked_then_dropped_and_counted(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    def reply(body: dict[str, Any]) -> str:
        first_ask = len(body["messages"]) == 2
        if int(body["seed"]) % 3 == 0:
            return '{"history": "too short"}'  # never valid
        return '{"oops": 1' if first_ask and int(body["seed"]) % 3 == 1 else profile_replier(body)

    server = openai_server(reply)
    library = load_profiles()
    plan = GenerationPlan(
        n=30, model=server_spec(server), seeds=tuple(f"{p.id}@{p.version}" for p in library)
    )
    result = asyncio.run(generate(plan, library, tmp_path / "gen"))
    journal = [
        json.loads(line) for line in (tmp_path / "gen" / JOURNAL).read_text().splitlines()[1:]
    ]
    never = sum(1 for e in journal if e["outcome"] == "dropped")
    assert result.dropped == never > 0 and result.accepted == 30 - never
    assert result.reasked > never  # the dropped were re-asked, and so were the fixed ones
    assert all(e["asks"] == 2 for e in journal if e["outcome"] == "dropped")
    retried = [m for m in server.requests if len(m["messages"]) == 4]
    assert "could not be used" in retried[0]["messages"][3]["content"]
    assert (
        "too short" in retried[0]["messages"][2]["content"]
        or "oops" in retried[0]["messages"][2]["content"]
    )
    # exit status under --fail-on-error, and the line saying how to retry
    ran = cli(
        "patients", "generate", "--model", plan.model, "--out", str(tmp_path / "gen"), "--n", "30"
    )
    assert ran.code == 3 and "samples failed" in ran.stderr and "rerun" in ran.stderr


async def test_copies_of_a_seed_or_of_each_other_are_removed(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    library = load_profiles()
    seeds = tuple(f"{p.id}@{p.version}" for p in library)
    copier = openai_server(seed_copier)
    copied = await generate(
        GenerationPlan(n=6, model=server_spec(copier), seeds=seeds), library, tmp_path / "a"
    )
    journal = [json.loads(line) for line in (tmp_path / "a" / JOURNAL).read_text().splitlines()[1:]]
    assert copied.duplicates == 6 and copied.accepted == 0
    assert {e["similar_to"] for e in journal} <= {p.id for p in library}

    same = openai_server(
        lambda body: json.dumps(
            fill(body["response_format"]["json_schema"]["schema"], random.Random(9))
        )
    )
    twins = await generate(
        GenerationPlan(n=6, model=server_spec(same), seeds=seeds), library, tmp_path / "b"
    )
    # the replies differ only where the schema pins a value (age, cue kinds...): one is kept
    assert twins.accepted + twins.duplicates == 6 and twins.accepted < 6


def test_a_folder_of_another_plan_is_refused(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(profile_replier)
    out = tmp_path / "gen"
    first = cli(
        "patients", "generate", "--model", server_spec(server), "--out", str(out), "--n", "4"
    )
    assert first.code == 0, first.stderr
    assert "generated 4 of 4 profiles" in first.stdout
    ran = cli("patients", "generate", "--model", server_spec(server), "--out", str(out), "--n", "5")
    assert (
        ran.code == 2 and "another plan (n 4 -> 5)" in ran.stderr and "Traceback" not in ran.stderr
    )
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    ran = cli(
        "patients", "generate", "--model", server_spec(server), "--out", str(tmp_path / "other")
    )
    assert ran.code == 2 and "holds files but no generation.jsonl" in ran.stderr


def test_generate_50_resumes_after_a_kill(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """A real process killed with SIGKILL mid-generation; the rerun finishes the plan with
    no sample made twice and none lost."""
    server = openai_server(profile_replier, latency_s=0.15)
    out = tmp_path / "gen"
    args = [
        "patients",
        "generate",
        "--model",
        server_spec(server),
        "--out",
        str(out),
        "--n",
        "50",
        "--concurrency",
        "2",
    ]
    child = subprocess.Popen(
        [sys.executable, "-m", "therapygym", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    journal = out / JOURNAL
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) > 12:
            break
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    before = len(journal.read_text().splitlines()) - 1
    assert 0 < before < 50, "the kill came too late to test a resume"
    asked_before = len(server.requests)

    ran = cli(*args)
    assert ran.code == 0, ran.stderr
    assert f"{before} of 50 samples were done before" in ran.stdout
    profiles = _all_profiles(out)
    assert len(profiles) == len({p.id for p in profiles}) == 50
    assert sorted(p.generated.sample for p in profiles if p.generated) == list(range(50))
    lines = [json.loads(line) for line in journal.read_text().splitlines()[1:]]
    assert Counter(e["sample"] for e in lines).most_common(1)[0][1] == 1  # journaled once each
    # only the samples in flight at the kill were asked twice
    assert len(server.requests) - asked_before == 50 - before
    assert asked_before <= before + 2


@pytest.mark.slow
def test_the_embedded_model_generates_and_says_its_profiles_are_poor(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    ran = cli(
        "patients",
        "generate",
        "--model",
        "local:smollm2",
        "--out",
        str(out),
        "--n",
        "1",
        "--retries",
        "0",
        "--max-tokens",
        "400",
        "--no-fail-on-error",
    )
    assert ran.code == 0, ran.stderr
    assert "profiles it writes will be poor" in ran.stderr
    lines = [json.loads(line) for line in (out / JOURNAL).read_text().splitlines()[1:]]
    assert len(lines) == 1 and lines[0]["outcome"] in ("accepted", "dropped", "duplicate")
    accepted = lines[0]["outcome"] == "accepted"
    assert len(_all_profiles(out)) == int(accepted)
    assert f"generated {int(accepted)} of 1 profiles" in ran.stdout
    if accepted:
        (profile,) = _all_profiles(out)
        assert profile.generated is not None and profile.generated.model == "local:smollm2"
