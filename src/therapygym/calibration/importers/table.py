"""Expert ratings kept in a spreadsheet or a JSONL export, read through a column mapping.

Rating studies rarely share a file layout, but three shapes cover most of them:

- `long`: one row per (dialogue, rater, criterion) with a score column;
- `wide`: one row per (dialogue, rater) and a column per criterion;
- `rater_columns`: one row per dialogue and a column per (criterion, rater), the usual
  multi-rater spreadsheet ("Agenda A", "Agenda B", ...).

A YAML mapping (`TableMapping`) names the columns and says which criterion is which CTRS
item or safety label, how scores shift onto the 0-6 CTRS scale (`score_offset: -1` for a
1-7 scale), how yes/no/n-a are spelled, and where transcripts are (a JSON column, or a
JSONL file of {dialogue_id, transcript}). Example:

    layout: rater_columns
    dialogue_column: Session
    raters:
      expert_a: {Agenda: Agenda A, Crisis: Crisis A}
      expert_b: {Agenda: Agenda B, Crisis: Crisis B}
    ctrs: {Agenda: agenda}
    safety: {Crisis: crisis_unaddressed}
    score_offset: -1

Nothing is dropped quietly: a rating whose cells are all empty stays in the bench as an
unscored line (so `Bench.summary()` counts it as a dialogue but not a rating); only rows
whose mapped cells are all empty are skipped; a row with a dialogue but no rater (or no
criterion) is an error that names the row and the column.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from therapygym.calibration.bench import (
    CTRS_SCALE,
    Bench,
    BenchError,
    BenchRating,
    BenchTurn,
    build_bench,
    ctrs_item_ids,
    safety_label_ids,
)
from therapygym.calibration.importers._read import (
    Table,
    cell_text,
    is_blank,
    parse_int,
    parse_turns,
    read_jsonl,
    read_table,
    spelled,
)
from therapygym.errors import describe_validation_error
from therapygym.yamlfile import read_yaml_mapping

RaterKind = Literal["human", "model"]


def _name(value: Any) -> Any:
    """YAML reads `1` as a number and `yes` as a boolean; column and criterion names are text."""
    if isinstance(value, bool):
        raise ValueError(
            "YAML read this unquoted word (yes/no/true/false/on/off) as a boolean; quote it"
        )
    return str(value) if isinstance(value, int | float) else value


Name = Annotated[str, BeforeValidator(_name), Field(min_length=1)]


def _criteria(value: Any) -> Any:
    """`ctrs: [agenda, homework]` is short for criteria named after the ids themselves."""
    if isinstance(value, list):
        return {_name(v): _name(v) for v in value}
    if isinstance(value, dict):
        return {_name(k): v for k, v in value.items()}
    return value


class TableMapping(BaseModel):
    """How a ratings table maps onto the bench; see the module docstring for the layouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layout: Literal["long", "wide", "rater_columns"]
    format: Literal["csv", "tsv", "jsonl"] | None = None
    dialogue_column: Name
    rater_column: Name | None = None
    rater_kind: RaterKind = "human"
    rater_kind_column: Name | None = None
    rater_kinds: dict[Name, RaterKind] = Field(default_factory=dict)
    criterion_column: Name | None = None
    score_column: Name | None = None
    raters: dict[Name, dict[Name, Name]] = Field(default_factory=dict)
    ctrs: Annotated[dict[Name, str], BeforeValidator(_criteria)] = Field(default_factory=dict)
    safety: Annotated[dict[Name, str], BeforeValidator(_criteria)] = Field(default_factory=dict)
    score_offset: Annotated[int, Field(strict=True)] = 0
    violated_values: list[Name] = Field(default_factory=lambda: ["yes", "true", "1"])
    not_violated_values: list[Name] = Field(default_factory=lambda: ["no", "false", "0"])
    missing_values: list[Annotated[str, BeforeValidator(_name)]] = Field(
        default_factory=lambda: ["n/a", ""]
    )
    transcript_column: Name | None = None
    transcripts: Path | None = None

    @field_validator("ctrs")
    @classmethod
    def _ctrs_ids(cls, value: dict[str, str]) -> dict[str, str]:
        return _known_ids(value, ctrs_item_ids(), "CTRS item")

    @field_validator("safety")
    @classmethod
    def _safety_ids(cls, value: dict[str, str]) -> dict[str, str]:
        return _known_ids(value, safety_label_ids(), "safety label")

    @model_validator(mode="after")
    def _consistent(self) -> TableMapping:
        needs = {
            "long": ("rater_column", "criterion_column", "score_column"),
            "wide": ("rater_column",),
            "rater_columns": ("raters",),
        }[self.layout]
        forbidden = {
            "long": ("raters",),
            "wide": ("criterion_column", "score_column", "raters"),
            "rater_columns": (
                "rater_column",
                "criterion_column",
                "score_column",
                "rater_kind_column",
            ),
        }[self.layout]
        for name in needs:
            if not getattr(self, name):
                raise ValueError(f"layout '{self.layout}' needs '{name}'")
        for name in forbidden:
            if getattr(self, name):
                raise ValueError(f"'{name}' does not apply to layout '{self.layout}'")
        if not self.ctrs and not self.safety:
            raise ValueError("map at least one criterion under 'ctrs' or 'safety'")
        both = sorted(set(self.ctrs) & set(self.safety))
        if both:
            raise ValueError(f"criterion {spelled(both)} is under both 'ctrs' and 'safety'")
        if self.rater_kind_column and self.rater_kinds:
            raise ValueError("give 'rater_kind_column' or 'rater_kinds', not both")
        if self.transcript_column and self.transcripts:
            raise ValueError("give 'transcript_column' or 'transcripts', not both")
        spellings = {
            "violated_values": self.violated_values,
            "not_violated_values": self.not_violated_values,
            "missing_values": self.missing_values,
        }
        owner: dict[str, str] = {}
        for field_name, values in spellings.items():
            for value in values:
                key = value.strip().casefold()
                if owner.setdefault(key, field_name) != field_name:
                    raise ValueError(f"{value!r} is in both '{owner[key]}' and '{field_name}'")
        criteria = set(self.ctrs) | set(self.safety)
        used: dict[str, str] = {}
        for rater, columns in self.raters.items():
            unknown = sorted(set(columns) - criteria)
            if unknown:
                raise ValueError(
                    f"raters.{rater}: criterion {spelled(unknown)} is not under 'ctrs' or "
                    f"'safety' (mapped: {spelled(sorted(criteria))})"
                )
            for name, column in columns.items():
                where = used.setdefault(column, f"raters.{rater}.{name}")
                if where != f"raters.{rater}.{name}":
                    raise ValueError(
                        f"column '{column}' is mapped twice ({where}, raters.{rater}.{name})"
                    )
        if self.layout == "rater_columns":
            unknown = sorted(set(self.rater_kinds) - set(self.raters))
            if unknown:
                raise ValueError(f"rater_kinds names {spelled(unknown)}, not under 'raters'")
        return self

    def criteria(self) -> dict[str, tuple[Literal["ctrs", "safety"], str]]:
        """Criterion name -> ("ctrs" | "safety", item or label id)."""
        out: dict[str, tuple[Literal["ctrs", "safety"], str]] = {}
        out.update({name: ("ctrs", item) for name, item in self.ctrs.items()})
        out.update({name: ("safety", label) for name, label in self.safety.items()})
        return out


def _known_ids(value: dict[str, str], known: tuple[str, ...], what: str) -> dict[str, str]:
    unknown = sorted({v for v in value.values() if v not in known})
    if unknown:
        raise ValueError(f"unknown {what} {spelled(unknown)}; expected one of {', '.join(known)}")
    targets: dict[str, str] = {}
    for name, target in value.items():
        if targets.setdefault(target, name) != name:
            raise ValueError(f"criteria '{targets[target]}' and '{name}' both map to '{target}'")
    return value


def load_table_mapping(path: Path) -> TableMapping:
    """Read and validate a mapping file; a relative `transcripts:` is taken from its folder."""
    data = read_yaml_mapping(path, "table mapping", BenchError)
    try:
        mapping = TableMapping.model_validate(data)
    except ValidationError as err:
        where = f"table mapping {path}"
        problems = err.errors()
        if all(not e["loc"] for e in problems):  # a cross-field check: its own words suffice
            messages = (str(e["msg"]).removeprefix("Value error, ") for e in problems)
            raise BenchError(f"{where}: " + "; ".join(messages)) from None
        raise BenchError(describe_validation_error(err, where)) from None
    if mapping.transcripts is not None and not mapping.transcripts.is_absolute():
        mapping = mapping.model_copy(update={"transcripts": path.parent / mapping.transcripts})
    return mapping


@dataclass
class _Draft:
    """One (dialogue, rater) rating being assembled from one or several rows."""

    dialogue_id: str
    rater: str
    kind: RaterKind
    row: int
    ctrs: dict[str, int | None] = field(default_factory=dict)
    safety: dict[str, bool | None] = field(default_factory=dict)
    cells: dict[str, int] = field(default_factory=dict)  # criterion -> row it came from


def import_table(data: Path, mapping: Path | TableMapping) -> Bench:
    """Read ratings from a CSV, TSV or JSONL file laid out as `mapping` says.

    A mapping file's relative `transcripts:` path is taken from the mapping's folder; a
    `TableMapping` built in Python uses its path as given.
    """
    if not isinstance(mapping, TableMapping):
        mapping = load_table_mapping(Path(mapping))
    data = Path(data)
    table = read_table(data, mapping.format)
    return _Importer(table, mapping).run()


class _Importer:
    def __init__(self, table: Table, mapping: TableMapping) -> None:
        self.table = table
        self.mapping = mapping
        self.criteria = mapping.criteria()
        self.drafts: dict[tuple[str, str], _Draft] = {}
        self.transcripts: dict[str, tuple[tuple[BenchTurn, ...], str]] = {}
        self.first_row: dict[str, int] = {}
        self.dialogue_rows: dict[str, int] = {}  # rater_columns: one row per dialogue
        m = mapping
        self.violated = {v.strip().casefold() for v in m.violated_values}
        self.not_violated = {v.strip().casefold() for v in m.not_violated_values}
        self.missing = {v.strip().casefold() for v in m.missing_values}

    def run(self) -> Bench:
        m, table = self.mapping, self.table
        columns = [m.dialogue_column, m.rater_column, m.rater_kind_column, m.transcript_column]
        columns += [m.criterion_column, m.score_column]
        if m.layout == "wide":
            columns += list(self.criteria)
        for per_rater in m.raters.values():
            columns += list(per_rater.values())
        wanted = [c for c in columns if c]
        table.require(wanted, " (named in the mapping)")
        if not table.rows:
            raise BenchError(f"{table.path}: no data rows after the header")
        for i, row in enumerate(table.rows):
            if all(is_blank(row.get(c)) for c in wanted):
                continue
            dialogue = self._required(i, m.dialogue_column)
            self.first_row.setdefault(dialogue, i)
            if m.transcript_column and not is_blank(row.get(m.transcript_column)):
                self._transcript(dialogue, row[m.transcript_column], i)
            getattr(self, f"_{m.layout}")(i, row, dialogue)
        if not self.drafts:
            raise BenchError(f"{table.path}: every row is empty in the columns the mapping names")
        raters = {rater for _, rater in self.drafts}
        unknown = sorted(set(m.rater_kinds) - raters)
        if unknown:
            raise BenchError(
                f"{table.path}: the mapping's rater_kinds names {spelled(unknown)}, but no "
                f"row has that rater (raters in the file: {spelled(sorted(raters))})"
            )
        return build_bench(str(table.path), self._ratings())

    # --- layouts -------------------------------------------------------------------------

    def _long(self, i: int, row: dict[str, Any], dialogue: str) -> None:
        m = self.mapping
        assert m.rater_column and m.criterion_column and m.score_column
        draft = self._draft(i, dialogue, self._required(i, m.rater_column))
        name = self._required(i, m.criterion_column)
        if name not in self.criteria:
            raise BenchError(
                f"{self.table.where(i, m.criterion_column)}: unknown criterion {name!r}; the "
                f"mapping lists {spelled(list(self.criteria))}"
            )
        if name in draft.cells:
            raise BenchError(
                f"{self.table.where(i)}: rater '{draft.rater}' scored {name!r} for dialogue "
                f"'{dialogue}' twice (also at {self.table.labels[draft.cells[name]]})"
            )
        self._score(draft, i, name, m.score_column)

    def _wide(self, i: int, row: dict[str, Any], dialogue: str) -> None:
        m = self.mapping
        assert m.rater_column
        rater = self._required(i, m.rater_column)
        if (dialogue, rater) in self.drafts:
            first = self.table.labels[self.drafts[dialogue, rater].row]
            raise BenchError(
                f"{self.table.where(i)}: rater '{rater}' rated dialogue '{dialogue}' twice "
                f"(also at {first}); one row per dialogue and rater in the wide layout"
            )
        draft = self._draft(i, dialogue, rater)
        for name in self.criteria:
            self._score(draft, i, name, name)

    def _rater_columns(self, i: int, row: dict[str, Any], dialogue: str) -> None:
        if dialogue in self.dialogue_rows:
            raise BenchError(
                f"{self.table.where(i, self.mapping.dialogue_column)}: dialogue '{dialogue}' "
                f"appears twice (also at {self.table.labels[self.dialogue_rows[dialogue]]}); "
                "one row per dialogue in the rater_columns layout"
            )
        self.dialogue_rows[dialogue] = i
        for rater, columns in self.mapping.raters.items():
            draft = self._draft(i, dialogue, rater)
            for name, column in columns.items():
                self._score(draft, i, name, column)

    # --- cells ---------------------------------------------------------------------------

    def _required(self, i: int, column: str) -> str:
        value = cell_text(self.table.rows[i].get(column))
        if not value:
            raise BenchError(
                f"{self.table.where(i, column)}: empty, but the row has other values; fill "
                "it in, or empty the whole row"
            )
        return value

    def _draft(self, i: int, dialogue: str, rater: str) -> _Draft:
        kind = self._kind(i, rater)
        draft = self.drafts.setdefault((dialogue, rater), _Draft(dialogue, rater, kind, i))
        if draft.kind != kind:
            raise BenchError(
                f"{self.table.where(i, self.mapping.rater_kind_column)}: rater '{rater}' is "
                f"'{kind}' here but '{draft.kind}' at {self.table.labels[draft.row]}"
            )
        return draft

    def _kind(self, i: int, rater: str) -> RaterKind:
        m = self.mapping
        if m.rater_kind_column:
            value = cell_text(self.table.rows[i].get(m.rater_kind_column)).lower()
            if value not in ("human", "model"):
                raise BenchError(
                    f"{self.table.where(i, m.rater_kind_column)}: "
                    f"{self.table.rows[i].get(m.rater_kind_column)!r}; expected 'human' or "
                    "'model'"
                )
            return value  # type: ignore[return-value]
        return m.rater_kinds.get(rater, m.rater_kind)

    def _score(self, draft: _Draft, i: int, name: str, column: str) -> None:
        kind, target = self.criteria[name]
        raw = self.table.rows[i].get(column)
        draft.cells[name] = i
        if kind == "ctrs":
            draft.ctrs[target] = self._ctrs(raw, i, column)
        else:
            draft.safety[target] = self._safety(raw, i, column)

    def _ctrs(self, raw: Any, i: int, column: str) -> int | None:
        if isinstance(raw, str | type(None)) and cell_text(raw).casefold() in self.missing:
            return None
        low, high = CTRS_SCALE
        offset = self.mapping.score_offset
        scale = f"a whole number from {low - offset} to {high - offset}"
        if offset:
            scale += f" (CTRS {low}-{high} after score_offset {offset:+d})"
        try:
            score = parse_int(raw) + offset
        except ValueError:
            raise BenchError(f"{self.table.where(i, column)}: {raw!r}; expected {scale}") from None
        if not low <= score <= high:
            raise BenchError(
                f"{self.table.where(i, column)}: score {raw!r} is off the scale; expected {scale}"
            )
        return score

    def _safety(self, raw: Any, i: int, column: str) -> bool | None:
        if isinstance(raw, bool):
            return raw
        value = cell_text(raw).casefold()
        if value in self.violated:
            return True
        if value in self.not_violated:
            return False
        if value in self.missing:
            return None
        m = self.mapping
        raise BenchError(
            f"{self.table.where(i, column)}: {raw!r}; expected violated "
            f"({spelled(m.violated_values)}), not violated ({spelled(m.not_violated_values)}) "
            f"or not applicable ({spelled(m.missing_values)})"
        )

    def _transcript(self, dialogue: str, raw: Any, i: int) -> None:
        where = self.table.where(i, self.mapping.transcript_column)
        turns = parse_turns(raw, where)
        first = self.transcripts.setdefault(dialogue, (turns, self.table.labels[i]))
        if first[0] != turns:
            raise BenchError(
                f"{where}: dialogue '{dialogue}' has a different transcript at {first[1]}; "
                "give it once, or identically"
            )

    # --- assembly ------------------------------------------------------------------------

    def _ratings(self) -> list[BenchRating]:
        m = self.mapping
        if m.transcripts is not None:
            self._read_transcripts(m.transcripts)
        wants_transcripts = bool(m.transcript_column or m.transcripts)
        ratings, placed = [], set()
        for draft in self.drafts.values():
            d = draft.dialogue_id
            transcript = self.transcripts.get(d)
            if transcript is None and wants_transcripts:
                source = m.transcripts or f"column '{m.transcript_column}'"
                raise BenchError(
                    f"{self.table.where(self.first_row[d])}: dialogue '{d}' has no transcript "
                    f"in {source}"
                )
            first = d not in placed
            placed.add(d)
            try:
                ratings.append(
                    BenchRating(
                        dialogue_id=d,
                        rater=draft.rater,
                        rater_kind=draft.kind,
                        transcript=transcript[0] if transcript and first else None,
                        ctrs=draft.ctrs,
                        safety=draft.safety,
                    )
                )
            except ValidationError as err:
                where = self.table.where(draft.row)
                raise BenchError(describe_validation_error(err, where)) from None
        return ratings

    def _read_transcripts(self, path: Path) -> None:
        """A JSONL file of {"dialogue_id": ..., "transcript": [...]}; lines for dialogues
        nobody rated are allowed (a transcript pool can be larger than the rated set)."""
        table = read_jsonl(path)
        table.require(["dialogue_id", "transcript"])
        for i, row in enumerate(table.rows):
            dialogue = cell_text(row.get("dialogue_id"))
            if not dialogue:
                raise BenchError(f"{table.where(i, 'dialogue_id')}: missing or empty")
            turns = parse_turns(row.get("transcript"), table.where(i, "transcript"))
            first = self.transcripts.setdefault(dialogue, (turns, table.labels[i]))
            if first[0] != turns:
                raise BenchError(
                    f"{table.where(i, 'transcript')}: dialogue '{dialogue}' has a different "
                    f"transcript at {first[1]}"
                )
