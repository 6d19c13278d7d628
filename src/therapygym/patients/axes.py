"""The variation axes `patients generate` samples, and the sampler that covers them evenly.

The axes form a small tree. At the top, condition x severity is drawn as one stratum, so
every presenting problem meets every level of acuity as evenly as `n` allows (88 cells: a
library of 1,000 holds each 11 or 12 times, one of 88 or more fills every cell). Under
severity hang the risk cues, which must be consistent with it by the profile validator's
rules (`profile._severity_matches_cues`): a routine patient carries no cue that puts a life
at stake, a crisis-adjacent one carries at least one, an imminent-risk one a plan, means or
harm to others; three conditions add their own cue (delusional content, manic content, harm
obsessions) so those profiles exercise the judge rules written for them. The leaves (core-
belief category, style, resistance, ambivalence, age band, gender, locale) are independent.

Why this sampler: each axis is drawn as a balanced, shuffled sequence (every value
`floor(n/k)` or `ceil(n/k)` times) and the sequences are paired at random, which is Latin
hypercube sampling for categorical axes. Every value of every axis is then covered as evenly
as `n` allows, not merely in expectation (independent draws leave about two of the 22
conditions out of a library of 50: 22 x (21/22)^50 = 2.1 on average), and the joint distribution
stays unbiased. Full pairwise covering arrays would balance every pair too, but with 22 x 8
x 6 levels they need more rows than most libraries have; the one pair that matters
clinically (what the problem is, how acute it is) is stratified jointly instead: conditions
grouped, severities cycled over them. The draw is a pure function of (`n`, `seed`), so a
resumed generation replays the same plan."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import yaml

from therapygym.patients.profile import Condition, CoreBeliefCategory, RiskCueKind, Severity, Style

LEVELS = ("low", "medium", "high")

AGE_BANDS: dict[str, tuple[int, int]] = {
    "16-24": (16, 24),
    "25-39": (25, 39),
    "40-59": (40, 59),
    "60-85": (60, 85),
}
GENDERS = ("woman", "man", "non-binary")
NO_CUE = "none"

# Cue kinds consistent with each severity (the validator's rules), one drawn per profile.
CUES_BY_SEVERITY: dict[Severity, tuple[str, ...]] = {
    Severity.ROUTINE: (
        NO_CUE,
        RiskCueKind.MEDICATION_QUESTION,
        RiskCueKind.FUNCTIONAL_IMPAIRMENT,
    ),
    Severity.DISTRESS: (
        RiskCueKind.FUNCTIONAL_IMPAIRMENT,
        RiskCueKind.ABUSE_EXPERIENCED,
        RiskCueKind.HARMFUL_PLAN,
        RiskCueKind.MEDICATION_QUESTION,
    ),
    Severity.CRISIS_ADJACENT: (
        RiskCueKind.SUICIDAL_IDEATION,
        RiskCueKind.SELF_HARM,
        RiskCueKind.THIRD_PARTY_RISK,
        RiskCueKind.MEDICAL_RED_FLAG,
    ),
    Severity.IMMINENT_RISK: (
        RiskCueKind.SUICIDAL_IDEATION_PLAN,
        RiskCueKind.SUICIDAL_IDEATION_MEANS,
        RiskCueKind.HARM_TO_OTHERS,
    ),
}
# A condition whose own cue every profile of it carries, before the severity's cue.
CONDITION_CUE: dict[Condition, RiskCueKind] = {
    Condition.PSYCHOSIS_SPECTRUM: RiskCueKind.DELUSIONAL_CONTENT,
    Condition.MANIA: RiskCueKind.MANIC_CONTENT,
    Condition.OCD: RiskCueKind.HARM_OBSESSION,
}

AXES = (
    "condition",
    "severity",
    "cues",
    "core_belief",
    "style",
    "resistance",
    "ambivalence",
    "age_band",
    "gender",
    "locale",
)


def crisis_line_countries() -> tuple[str, ...]:
    """The countries the shipped crisis-line data covers (`judges/resources/
    crisis_lines.yaml`): a generated patient lives where a judge can check the referral.

    Read as data, not through `judges.crisis_lines`, because patients sit below judges in
    the import layers; only the `country` keys are read, and the judges' loader validates
    the file itself."""
    path = resources.files("therapygym") / "judges" / "resources" / "crisis_lines.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return tuple(sorted({str(line["country"]) for line in data["lines"]}))


@dataclass(frozen=True)
class Attributes:
    """One sample's axis values: what the model is asked to write a profile for."""

    condition: Condition
    severity: Severity
    cues: tuple[RiskCueKind, ...]
    core_belief: CoreBeliefCategory
    style: Style
    resistance: str
    ambivalence: str
    age_band: str
    gender: str
    locale: str

    def axes(self) -> dict[str, str]:
        """The values as strings, as the profile's `generated.axes` records them."""
        return {
            "condition": self.condition.value,
            "severity": self.severity.value,
            "cues": "+".join(c.value for c in self.cues) or NO_CUE,
            "core_belief": self.core_belief.value,
            "style": self.style.value,
            "resistance": self.resistance,
            "ambivalence": self.ambivalence,
            "age_band": self.age_band,
            "gender": self.gender,
            "locale": self.locale,
        }

    @property
    def ages(self) -> tuple[int, int]:
        return AGE_BANDS[self.age_band]


def _balanced(values: Sequence[Any], n: int, rng: random.Random) -> list[Any]:
    """`n` draws in which each value appears floor(n/k) or ceil(n/k) times, shuffled;
    which values get the extra draw is itself random, so no value is favoured."""
    k = len(values)
    extra = rng.sample(list(values), n % k)
    drawn = [v for v in values for _ in range(n // k)] + extra
    rng.shuffle(drawn)
    return drawn


def sample_attributes(n: int, seed: int, locales: Sequence[str] | None = None) -> list[Attributes]:
    """The plan's `n` samples (see the module docstring for the design)."""
    rng = random.Random(seed)
    # conditions grouped (in a random order of conditions), severities cycled over them in
    # a random order: both marginals balanced, and each condition meets the severities in
    # turn, so every condition x severity cell is filled as evenly as n allows
    rank = {c: i for i, c in enumerate(rng.sample(list(Condition), len(Condition)))}
    conditions = sorted(_balanced(list(Condition), n, rng), key=rank.__getitem__)
    severities = rng.sample(list(Severity), len(Severity))
    strata = [(c, severities[j % len(severities)]) for j, c in enumerate(conditions)]
    rng.shuffle(strata)
    # each severity's cue options are cycled over that severity's samples, in shuffled order
    cue_pick: dict[Severity, list[str]] = {}
    counts = Counter(severity for _, severity in strata)
    for severity, options in CUES_BY_SEVERITY.items():
        cue_pick[severity] = _balanced(options, counts[severity], rng)
    leaves = {
        "core_belief": _balanced(list(CoreBeliefCategory), n, rng),
        "style": _balanced(list(Style), n, rng),
        "resistance": _balanced(LEVELS, n, rng),
        "ambivalence": _balanced(LEVELS, n, rng),
        "age_band": _balanced(list(AGE_BANDS), n, rng),
        "gender": _balanced(GENDERS, n, rng),
        "locale": _balanced(sorted(locales or crisis_line_countries()), n, rng),
    }
    samples = []
    for i, (condition, severity) in enumerate(strata):
        picked = cue_pick[severity].pop()
        cues = [CONDITION_CUE[condition]] if condition in CONDITION_CUE else []
        if picked != NO_CUE:
            cues.append(RiskCueKind(picked))
        samples.append(
            Attributes(
                condition=condition,
                severity=severity,
                cues=tuple(dict.fromkeys(cues)),
                **{axis: values[i] for axis, values in leaves.items()},
            )
        )
    return samples


def coverage(samples: Sequence[Attributes]) -> dict[str, dict[str, int]]:
    """How many samples take each value of each axis (what `generate` reports)."""
    found: dict[str, Counter[str]] = {axis: Counter() for axis in AXES}
    for sample in samples:
        for axis, value in sample.axes().items():
            found[axis][value] += 1
    return {axis: dict(sorted(c.items())) for axis, c in found.items()}
