"""The HTML report: one self-contained file (`therapygym report RUN -o report.html`).

Everything the page needs is inside it: the stylesheet and a few lines of script inline,
the charts as inline SVG. A Content-Security-Policy in the page allows exactly that
script (by its hash) and nothing from any address, so the file works offline and cannot
load anything. Templates are autoescaped: transcript text, judge rationales, therapist
names and judge specs are shown as text, whatever they contain. The calibration and
scorecard sections are the ones their commands write (`calibration_section.html`,
`scorecard_section.html`), rendered again from their JSON.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from markupsafe import Markup
from pydantic import BaseModel, ValidationError

from therapygym import __version__
from therapygym.artefacts import write_text
from therapygym.errors import TherapygymError, describe_validation_error
from therapygym.judges.fidelity_summary import FidelityReport
from therapygym.judges.panel import Aggregation
from therapygym.report.charts import run_charts
from therapygym.report.data import RunData, SessionView, report_data
from therapygym.report.fidelity import RATES, fidelity_of
from therapygym.stats import format_ci
from therapygym.store import RunStore
from therapygym.templates import html_env

CALIBRATION_FILE = "calibration.json"
SCORECARD_FILE = "scorecard.json"


class ReportInputError(TherapygymError):
    """A calibration or scorecard file the report cannot read."""


@cache
def _static(name: str) -> str:
    return (resources.files("therapygym.report") / "static" / name).read_text(encoding="utf-8")


def script_source() -> str:
    return _static("report.js")


def script_hash() -> str:
    """The CSP source for the one inline script (`'sha256-...'`)."""
    digest = hashlib.sha256(script_source().encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def content_security_policy(*, forms: bool = False) -> str:
    """Nothing from anywhere: inline styles, the page's own script (by hash), data: images.
    `forms` lets the viewer's filter form submit to its own server."""
    form_action = "'self'" if forms else "'none'"
    return "; ".join(
        [
            "default-src 'none'",
            "style-src 'unsafe-inline'",
            f"script-src {script_hash()}",
            "img-src data:",
            "base-uri 'none'",
            f"form-action {form_action}",
        ]
    )


def run_href(run_id: str) -> str:
    return "/runs/" + quote(run_id, safe="")


def session_href(session_id: str) -> str:
    return "/sessions/" + quote(session_id, safe="")


@cache
def _page_globals() -> dict[str, Any]:
    """What every report and viewer page uses; passed with each render rather than set on
    the shared HTML environment, which other packages' sections render in too."""
    return dict(
        ci=format_ci,
        version=__version__,
        css=Markup(_static("report.css")),
        js=Markup(script_source()),
    )


def render_page(template: str, *, csp: str, **context: Any) -> str:
    """Render one of the report's or viewer's pages (all share `_base.html.j2`)."""
    page = html_env().get_template(f"therapygym.report:templates/{template}")
    return page.render(**_page_globals(), csp=csp, **context)


def _load(path: Path, default_name: str, model: type[BaseModel], what: str) -> BaseModel:
    file = path / default_name if path.is_dir() else path
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        problem = "not UTF-8 text" if isinstance(err, UnicodeDecodeError) else err.strerror
        raise ReportInputError(
            f"{what} file {file} cannot be read ({problem or err}); give the JSON the "
            f"`{what}` command wrote, or the folder holding {default_name}"
        ) from None
    try:
        return model.model_validate_json(text)
    except ValidationError as err:
        raise ReportInputError(describe_validation_error(err, f"{what} file {file}")) from None


def calibration_section(path: Path) -> Markup:
    """The calibration section from a `calibration.json` (or the folder holding it)."""
    from therapygym.calibration.render import html_section
    from therapygym.calibration.report import CalibrationReport

    report = _load(path, CALIBRATION_FILE, CalibrationReport, "calibration")
    return Markup(html_section(report))  # type: ignore[arg-type]  # escaped by its template


def scorecard_section(path: Path) -> Markup:
    """The five-axis scorecard section from a `scorecard.json` (or its folder)."""
    from therapygym.probes.render import scorecard_html
    from therapygym.probes.scorecard_data import Scorecard

    card = _load(path, SCORECARD_FILE, Scorecard, "scorecard")
    return Markup(scorecard_html(card))  # type: ignore[arg-type]  # escaped by its template


def render_report(
    data: RunData,
    *,
    scorecards: Sequence[Markup] = (),
    calibrations: Sequence[Markup] = (),
    fidelity: FidelityReport | None = None,
    generated_at: str | None = None,
) -> str:
    """The report of one run as one HTML document (with the patient-fidelity section
    when `fidelity`, the run's audit, is given)."""

    def anchor(sv: SessionView) -> str:
        return "#" + sv.anchor

    return render_page(
        "report.html.j2",
        csp=content_security_policy(),
        data=data,
        charts=run_charts(data),
        scorecards=list(scorecards),
        calibrations=list(calibrations),
        fidelity=fidelity,
        fidelity_rates=RATES,
        session_href=anchor,
        generated_at=generated_at or datetime.now(UTC).isoformat(timespec="seconds"),
    )


def write_report(
    store: RunStore,
    run_id: str,
    output: Path,
    *,
    aggregation: Aggregation = "mean",
    judges: Collection[str] | None = None,
    scorecard: Sequence[Path] = (),
    calibration: Sequence[Path] = (),
) -> Path:
    """Write the report of `run_id` to `output` (atomically: a partial file is never left
    behind); returns the path written. `judges`: those judges' scores only (default every
    judge's, as one panel). Calibration and scorecard files are optional; the audit of the
    run's patients (`patients audit`) is shown when the store holds one. The numbers are
    the whole run's; the transcripts are those of `report_data`'s sample (every session of
    a run of at most `data.REPORT_SESSIONS`), and the page says how to view the rest."""
    sections = {
        "scorecards": [scorecard_section(p) for p in scorecard],
        "calibrations": [calibration_section(p) for p in calibration],
    }
    data = report_data(store, run_id, aggregation, judges=judges)
    html = render_report(data, fidelity=fidelity_of(store, run_id), **sections)
    return write_text(output, html)
