"""A rating as the studio's tables hold it, shared by the agreement and the export."""

from __future__ import annotations

from typing import NamedTuple

CTRS_PREFIX = "ctrs:"
SAFETY_PREFIX = "safety:"


class StoredRating(NamedTuple):
    """One row of `study_ratings`: `item` is `ctrs:<item>` or `safety:<label>`; `value` is
    0-6 for CTRS, 1 (violated) / 0 (not) for safety, None when not scored or, with `na`,
    not applicable; `evidence` holds turn ids of the session."""

    rater: str
    session_id: str
    item: str
    value: int | None
    na: bool
    evidence: tuple[str, ...]
    note: str | None
    rubric_ref: str

    @property
    def scored(self) -> bool:
        """Whether the row says something about the item (a score, or not applicable)."""
        return self.value is not None or self.na
