"""Therapist kinds by the prefix of their spec: `rule-based`, `theraagent[...]:<spec>`.

A therapist spec whose prefix (the text before the first `:` or `[`) names a registered
kind is built by that kind's loader; any other spec is a model spec, and the model sits in
the therapist's seat with a system prompt (`therapists/prompted.py`). Loaders are
registered by `"module:function"` path, so a kind's module (TheraAgent imports the judges)
is imported only when a spec names it.

A new kind is a loader with the `TherapistLoader` signature plus one registration line
below; a third-party package declares an entry point in the group `therapygym.therapists`
whose name is the prefix and whose value is its loader's `module:function`. A kind shadows
a model backend or a models-file entry of the same name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from therapygym.models import BaseChatModel, ResponseCache, UsageLedger
from therapygym.registry import Registry
from therapygym.session import Participant

_PREFIX = re.compile(r"[:\[]")  # a kind's name ends at its options or its target


class TherapistLoader(Protocol):
    """Builds the therapist a spec names, and the models behind it (the caller closes
    them when done; none for a therapist without a model)."""

    def __call__(
        self,
        spec: str,
        *,
        cache: ResponseCache | None = None,
        models_file: Path | str | None = None,
        prompt: str | None = None,
        ledger: UsageLedger | None = None,
    ) -> tuple[Participant, list[BaseChatModel]]: ...


THERAPIST_KINDS: Registry[TherapistLoader] = Registry(
    "therapist kind", group="therapygym.therapists"
)
THERAPIST_KINDS.register("rule-based", "therapygym.therapists.rule_based:load_rule_based")
THERAPIST_KINDS.register("theraagent", "therapygym.therapists.theraagent:load_theraagent")


def therapist_kind(spec: str) -> str | None:
    """The registered kind a spec names by its prefix, or None for a model spec."""
    name = _PREFIX.split(spec.strip(), maxsplit=1)[0]
    return name if name and name in THERAPIST_KINDS else None
