"""Expert ratings kept in a spreadsheet or a JSONL export, read through a column mapping.

Rating studies rarely share a file layout, but four shapes cover most of them:

- `long`: one row per (dialogue, rater, criterion) with a score column;
- `wide`: one row per (dialogue, rater) and a column per criterion;
- `rater_columns`: one row per dialogue and a column per (criterion, rater), the usual
  multi-rater spreadsheet ("Agenda A", "Agenda B", ...);
- `rater_lists`: one row per dialogue, a list of rater ids and, per criterion, a list of
  scores in the same order (MindEval's layout: the k-th score is the k-th rater's, and the
  order may differ from row to row, so rater identity is kept, never the position).

A YAML mapping (`TableMapping`) names the columns and says which criterion is which CTRS
item or safety label, or keeps it as a free criterion under its own name (`criteria:`,
with an optional min/max scale), how scores shift onto the 0-6 CTRS scale
(`score_offset: -1` for a 1-7 scale), how yes/no/n-a are spelled, and where transcripts
are (a JSON column, or a JSONL file of {dialogue_id, transcript}). In `wide` and
`rater_lists` the criteria are columns, or keys of one object column
(`score_object_column: scores` for {"c1": [...], "c2": [...]}). Example:

    layout: rater_columns
    dialogue_column: Session
    raters:
      expert_a: {Agenda: Agenda A, Crisis: Crisis A}
      expert_b: {Agenda: Agenda B, Crisis: Crisis B}
    ctrs: {Agenda: agenda}
    safety: {Crisis: crisis_unaddressed}
    score_offset: -1

Missing values come first: every cell and every list item, whatever its type (text, a
JSON number, null), is compared with `missing_values` before it is read as a score or a
yes/no, so `missing_values: [-1]` makes a JSON -1 "not scored" rather than a score. The
yes/no spellings (`violated_values`, `not_violated_values`, defaults included) apply to
safety criteria only, and a spelling that is both missing and yes/no is an error that says
which list holds it, since a cell cannot mean both.

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
    Scale,
    build_bench,
    ctrs_item_ids,
    safety_label_ids,
)
from therapygym.calibration.importers._read import (
    Table,
    cell_text,
    is_blank,
    parse_int,
    parse_list,
    parse_object,
    parse_turns,
    read_jsonl,
    read_table,
    spelled,
)
from therapygym.errors import describe_validation_error
from therapygym.yamlfile import read_yaml_mapping

RaterKind = Literal["human", "model"]
CriterionKind = Literal["ctrs", "safety", "free"]
Layout = Literal["long", "wide", "rater_columns", "rater_lists"]
SPELLINGS = ("violated_values", "not_violated_values", "missing_values")


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


def _free_criteria(value: Any) -> Any:
    """`criteria: [c1, c2]` is short for free criteria without a declared scale."""
    if isinstance(value, list):
        return {_name(v): None for v in value}
    if isinstance(value, dict):
        return {_name(k): v for k, v in value.items()}
    return value


def _spelling(value: Any) -> str:
    """How a cell or a mapping's spelling is compared: trimmed text, case-folded; a JSON
    number by its spelling (-1, 2.5; a whole float without ".0")."""
    return cell_text(value).casefold()


class TableMapping(BaseModel):
    """How a ratings table maps onto the bench; see the module docstring for the layouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    layout: Layout
    format: Literal["csv", "tsv", "jsonl"] | None = None
    dialogue_column: Name
    rater_column: Name | None = None
    rater_list_column: Name | None = None
    rater_kind: RaterKind = "human"
    rater_kind_column: Name | None = None
    rater_kinds: dict[Name, RaterKind] = Field(default_factory=dict)
    criterion_column: Name | None = None
    score_column: Name | None = None
    score_object_column: Name | None = None
    raters: dict[Name, dict[Name, Name]] = Field(default_factory=dict)
    ctrs: Annotated[dict[Name, str], BeforeValidator(_criteria)] = Field(default_factory=dict)
    safety: Annotated[dict[Name, str], BeforeValidator(_criteria)] = Field(default_factory=dict)
    criteria: Annotated[dict[Name, Scale | None], BeforeValidator(_free_criteria)] = Field(
        default_factory=dict
    )
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
            "rater_lists": ("rater_list_column",),
        }[self.layout]
        forbidden = {
            "long": ("raters", "rater_list_column", "score_object_column"),
            "wide": ("criterion_column", "score_column", "raters", "rater_list_column"),
            "rater_columns": (
                "rater_column",
                "criterion_column",
                "score_column",
                "rater_kind_column",
                "rater_list_column",
                "score_object_column",
            ),
            "rater_lists": (
                "rater_column",
                "criterion_column",
                "score_column",
                "raters",
                "rater_kind_column",
            ),
        }[self.layout]
        for name in needs:
            if not getattr(self, name):
                raise ValueError(f"layout '{self.layout}' needs '{name}'")
        for name in forbidden:
            if getattr(self, name):
                raise ValueError(f"'{name}' does not apply to layout '{self.layout}'")
        if not self.ctrs and not self.safety and not self.criteria:
            raise ValueError("map at least one criterion under 'ctrs', 'safety' or 'criteria'")
        for first, second in (("ctrs", "safety"), ("ctrs", "criteria"), ("safety", "criteria")):
            both = sorted(set(getattr(self, first)) & set(getattr(self, second)))
            if both:
                raise ValueError(
                    f"criterion {spelled(both)} is under both '{first}' and '{second}'"
                )
        if self.score_offset and not self.ctrs:
            raise ValueError(
                "'score_offset' shifts scores onto the CTRS 0-6 scale and applies to 'ctrs' "
                "only; free 'criteria' keep the source's scale (declare it with min and max)"
            )
        if self.rater_kind_column and self.rater_kinds:
            raise ValueError("give 'rater_kind_column' or 'rater_kinds', not both")
        if self.transcript_column and self.transcripts:
            raise ValueError("give 'transcript_column' or 'transcripts', not both")
        self._check_spellings()
        criteria = set(self.ctrs) | set(self.safety) | set(self.criteria)
        used: dict[str, str] = {}
        for rater, columns in self.raters.items():
            unknown = sorted(set(columns) - criteria)
            if unknown:
                raise ValueError(
                    f"raters.{rater}: criterion {spelled(unknown)} is not under 'ctrs', "
                    f"'safety' or 'criteria' (mapped: {spelled(sorted(criteria))})"
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

    def _check_spellings(self) -> None:
        """The precedence rule (module docstring): yes/no spellings exist only for safety
        criteria, and then no spelling may also mean "missing"."""
        if not self.safety:
            given = [n for n in SPELLINGS[:2] if n in self.model_fields_set]
            if given:
                raise ValueError(
                    f"'{given[0]}' spells safety answers, but the mapping has no 'safety' criteria"
                )
            return
        owner: dict[str, str] = {}
        for field_name in SPELLINGS:
            for value in getattr(self, field_name):
                first = owner.setdefault(_spelling(value), field_name)
                if first != field_name:
                    raise ValueError(
                        f"{value!r} is in both {self._list_name(first)} and "
                        f"{self._list_name(field_name)}; a safety cell cannot mean both, so "
                        "keep it in one list (set a default list yourself to change it)"
                    )

    def _list_name(self, field_name: str) -> str:
        if field_name in self.model_fields_set:
            return f"'{field_name}'"
        return f"'{field_name}' (its default {spelled(getattr(self, field_name))})"

    def targets(self) -> dict[str, tuple[CriterionKind, str]]:
        """Criterion name -> ("ctrs" | "safety" | "free", item, label or criterion id)."""
        out: dict[str, tuple[CriterionKind, str]] = {}
        out.update({name: ("ctrs", item) for name, item in self.ctrs.items()})
        out.update({name: ("safety", label) for name, label in self.safety.items()})
        out.update({name: ("free", name) for name in self.criteria})
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
    criteria: dict[str, int | None] = field(default_factory=dict)
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
        self.targets = mapping.targets()
        self.drafts: dict[tuple[str, str], _Draft] = {}
        self.transcripts: dict[str, tuple[tuple[BenchTurn, ...], str]] = {}
        self.first_row: dict[str, int] = {}
        self.dialogue_rows: dict[str, int] = {}  # rater_columns: one row per dialogue
        self.object_keys: set[str] = set()  # criteria seen in the score_object_column
        m = mapping
        self.violated = {_spelling(v) for v in m.violated_values}
        self.not_violated = {_spelling(v) for v in m.not_violated_values}
        self.missing = {_spelling(v) for v in m.missing_values}

    def run(self) -> Bench:
        m, table = self.mapping, self.table
        columns = [m.dialogue_column, m.rater_column, m.rater_kind_column, m.transcript_column]
        columns += [m.criterion_column, m.score_column, m.rater_list_column]
        columns += [m.score_object_column]
        if m.layout in ("wide", "rater_lists") and not m.score_object_column:
            columns += list(self.targets)
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
        if m.score_object_column:
            absent = [name for name in self.targets if name not in self.object_keys]
            if absent:
                raise BenchError(
                    f"{table.path}: no row's column '{m.score_object_column}' has criterion "
                    f"{spelled(absent)} (keys there: {spelled(sorted(self.object_keys))}); "
                    "the mapping names criteria as the file does"
                )
        raters = {rater for _, rater in self.drafts}
        unknown = sorted(set(m.rater_kinds) - raters)
        if unknown:
            raise BenchError(
                f"{table.path}: the mapping's rater_kinds names {spelled(unknown)}, but no "
                f"row has that rater (raters in the file: {spelled(sorted(raters))})"
            )
        scales = {name: scale for name, scale in m.criteria.items() if scale is not None}
        return build_bench(str(table.path), self._ratings(), scales)

    # --- layouts -------------------------------------------------------------------------

    def _long(self, i: int, row: dict[str, Any], dialogue: str) -> None:
        m = self.mapping
        assert m.rater_column and m.criterion_column and m.score_column
        draft = self._draft(i, dialogue, self._required(i, m.rater_column))
        name = self._required(i, m.criterion_column)
        if name not in self.targets:
            raise BenchError(
                f"{self.table.where(i, m.criterion_column)}: unknown criterion {name!r}; the "
                f"mapping lists {spelled(list(self.targets))}"
            )
        if name in draft.cells:
            raise BenchError(
                f"{self.table.where(i)}: rater '{draft.rater}' scored {name!r} for dialogue "
                f"'{dialogue}' twice (also at {self.table.labels[draft.cells[name]]})"
            )
        where = self.table.where(i, m.score_column)
        self._score(draft, i, name, row.get(m.score_column), where)

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
        for name, (raw, column) in self._cells(i, row).items():
            self._score(draft, i, name, raw, self.table.where(i, column))

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
                self._score(draft, i, name, row.get(column), self.table.where(i, column))

    def _rater_lists(self, i: int, row: dict[str, Any], dialogue: str) -> None:
        column = self.mapping.rater_list_column
        assert column
        raters = self._rater_ids(i, column)
        drafts = {}
        # Drafts in rater-id order: the bench (and its digest) must not depend on the order
        # a row happens to list its raters in.
        for rater in sorted(raters):
            if (dialogue, rater) in self.drafts:
                first = self.table.labels[self.drafts[dialogue, rater].row]
                raise BenchError(
                    f"{self.table.where(i, column)}: rater '{rater}' rated dialogue "
                    f"'{dialogue}' twice (also at {first})"
                )
            drafts[rater] = self._draft(i, dialogue, rater)
        for name, (raw, field_name) in self._cells(i, row).items():
            where = self.table.where(i, field_name)
            if self._missing(raw):  # the whole cell: nobody scored this criterion here
                values = [raw] * len(raters)
            else:
                values = parse_list(raw, where, f"a list of {len(raters)} scores")
                if len(values) != len(raters):
                    raise BenchError(
                        f"{where}: {len(values)} score(s) for {len(raters)} raters "
                        f"({spelled(raters)} in column '{column}'); expected one score per "
                        "rater, in the same order"
                    )
            for k, (rater, value) in enumerate(zip(raters, values, strict=True), start=1):
                self._score(drafts[rater], i, name, value, f"{where}, item {k} (rater '{rater}')")

    # --- cells ---------------------------------------------------------------------------

    def _required(self, i: int, column: str) -> str:
        value = cell_text(self.table.rows[i].get(column))
        if not value:
            raise self._empty(i, column)
        return value

    def _empty(self, i: int, column: str) -> BenchError:
        return BenchError(
            f"{self.table.where(i, column)}: empty, but the row has other values; fill "
            "it in, or empty the whole row"
        )

    def _rater_ids(self, i: int, column: str) -> list[str]:
        """The row's rater ids, in the row's order (the order of its score lists)."""
        where = self.table.where(i, column)
        raw = self.table.rows[i].get(column)
        if is_blank(raw):
            raise self._empty(i, column)
        items = parse_list(raw, where, 'a list of rater ids, e.g. ["r1"]')
        if not items:
            raise BenchError(f"{where}: an empty list; expected the ids of the dialogue's raters")
        raters: list[str] = []
        for k, item in enumerate(items, start=1):
            rater = cell_text(item) if isinstance(item, str | int) else ""
            if isinstance(item, bool) or not rater:
                raise BenchError(
                    f"{where}, item {k}: {item!r}; expected a rater id (text or a whole number)"
                )
            if rater in raters:
                raise BenchError(
                    f"{where}, item {k}: rater '{rater}' is listed twice; the k-th score "
                    "belongs to the k-th rater, so each rater is listed once"
                )
            raters.append(rater)
        return raters

    def _cells(self, i: int, row: dict[str, Any]) -> dict[str, tuple[Any, str]]:
        """Criterion name -> (cell, where it is) for the layouts with a cell per criterion:
        its own column, or its key in the score object column ("scores.c1")."""
        column = self.mapping.score_object_column
        if column is None:
            return {name: (row.get(name), name) for name in self.targets}
        scores = parse_object(
            row.get(column), self.table.where(i, column), 'scores by criterion, e.g. {"c1": 4}'
        )
        self.object_keys.update(scores)
        return {name: (scores.get(name), f"{column}.{name}") for name in self.targets}

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

    def _missing(self, raw: Any) -> bool:
        """Missing first, for every cell type (the module docstring's precedence rule)."""
        return _spelling(raw) in self.missing

    def _or_missing(self) -> str:
        return f", or a missing value ({spelled(self.mapping.missing_values)})"

    def _score(self, draft: _Draft, i: int, name: str, raw: Any, where: str) -> None:
        kind, target = self.targets[name]
        draft.cells[name] = i
        if kind == "ctrs":
            draft.ctrs[target] = self._ctrs(raw, where)
        elif kind == "safety":
            draft.safety[target] = self._safety(raw, where)
        else:
            draft.criteria[target] = self._free(raw, where, self.mapping.criteria[name])

    def _ctrs(self, raw: Any, where: str) -> int | None:
        if self._missing(raw):
            return None
        low, high = CTRS_SCALE
        offset = self.mapping.score_offset
        scale = f"a whole number from {low - offset} to {high - offset}"
        if offset:
            scale += f" (CTRS {low}-{high} after score_offset {offset:+d})"
        try:
            score = parse_int(raw) + offset
        except ValueError:
            raise BenchError(f"{where}: {raw!r}; expected {scale}{self._or_missing()}") from None
        if not low <= score <= high:
            raise BenchError(f"{where}: score {raw!r} is off the scale; expected {scale}")
        return score

    def _free(self, raw: Any, where: str, scale: Scale | None) -> int | None:
        if self._missing(raw):
            return None
        expected = "a whole number"
        if scale is not None:
            expected += f" from {scale.min} to {scale.max}"
        try:
            score = parse_int(raw)
        except ValueError:
            raise BenchError(f"{where}: {raw!r}; expected {expected}{self._or_missing()}") from None
        if scale is not None and not scale.min <= score <= scale.max:
            raise BenchError(f"{where}: score {raw!r} is off the scale; expected {expected}")
        return score

    def _safety(self, raw: Any, where: str) -> bool | None:
        if self._missing(raw):
            return None
        if isinstance(raw, bool):
            return raw
        value = _spelling(raw)
        if value in self.violated:
            return True
        if value in self.not_violated:
            return False
        m = self.mapping
        raise BenchError(
            f"{where}: {raw!r}; expected violated "
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
                        criteria=draft.criteria,
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
