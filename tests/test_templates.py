"""The two Jinja environments: prompts reach the model verbatim, pages escape every value."""

from __future__ import annotations

import pytest
from jinja2 import TemplateNotFound, UndefinedError

from therapygym.templates import html_env, package_text, prompt_env, render_prompt


def test_prompts_are_not_escaped_and_variables_are_strict() -> None:
    template = prompt_env().from_string("Patient: {{ text }}")
    assert template.render(text="<b>I'm & fine</b>") == "Patient: <b>I'm & fine</b>"
    with pytest.raises(UndefinedError):
        template.render(txt="misspelt")


def test_html_escapes_every_value() -> None:
    page = html_env().from_string("<p>{{ text }}</p>").render(text="<script>x()</script>")
    assert page == "<p>&lt;script&gt;x()&lt;/script&gt;</p>"
    with pytest.raises(UndefinedError):
        html_env().from_string("{{ nothing }}").render()


def test_templates_load_by_package_and_path() -> None:
    name = "therapygym.judges:prompts/system.j2"
    rendered = render_prompt(name, rubric=_Rubric())
    source = package_text(name)
    assert rendered == source.replace("{{ rubric.instructions }}", "instructions").strip()
    for missing in ("therapygym.judges:prompts/none.j2", "no-package-here", "nope.x:a.j2"):
        with pytest.raises(TemplateNotFound):
            prompt_env().get_template(missing)


def test_a_bare_name_is_found_beside_the_template_that_names_it() -> None:
    env = html_env()
    page = "therapygym.report:templates/report.html.j2"
    assert env.join_path("_base.html.j2", page) == "therapygym.report:templates/_base.html.j2"
    assert env.join_path("therapygym.probes:x.j2", page) == "therapygym.probes:x.j2"
    assert env.join_path("b.j2", "pkg:a.j2") == "pkg:b.j2"


class _Rubric:
    """Enough of a rubric for the judge's system prompt."""

    def __getattr__(self, name: str) -> str:
        return name
