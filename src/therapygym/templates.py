"""The package's two Jinja environments: one for prompts, one for HTML.

Prompts and HTML need opposite escaping (a prompt must reach the model verbatim; a page
must escape every value), so there are exactly two environments, each built once. Both load
templates from package resources by name `"<package>:<path>"`, e.g.
`"therapygym.judges:prompts/system.j2"`, so any package's templates are reachable from the
one environment without a loader per package. Inside a template, a name without a package
(`{% extends "_base.html.j2" %}`) is looked up beside the template that names it.

Both use `StrictUndefined`: a misspelt variable is an error, never an empty string in a
prompt or a page. Templates are package data and never change while running, so they are
read once (`package_text`), and prompt fingerprints hash the same text the model is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib import resources

from jinja2 import BaseLoader, Environment, StrictUndefined, TemplateNotFound, select_autoescape


@cache
def package_text(name: str) -> str:
    """The text of the package resource `"<package>:<path>"` (a template's source)."""
    package, sep, path = name.partition(":")
    if not sep or not package or not path:
        raise TemplateNotFound(name, f"template name {name!r} is not '<package>:<path>'")
    try:
        return (resources.files(package) / path).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        raise TemplateNotFound(name) from None


class _PackageLoader(BaseLoader):
    """Loads `"<package>:<path>"` names from package resources, importing the package
    only when one of its templates is first asked for."""

    def get_source(
        self, environment: Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool]]:
        return package_text(template), None, lambda: True


class _PackageEnvironment(Environment):
    """Resolves a bare name in `extends`/`include`/`import` beside the naming template."""

    def join_path(self, template: str, parent: str) -> str:
        if ":" in template or ":" not in parent:
            return template
        package, _, path = parent.partition(":")
        folder = path.rpartition("/")[0]
        return f"{package}:{folder}/{template}" if folder else f"{package}:{template}"


@cache
def prompt_env() -> Environment:
    """Prompts: no escaping (the model reads the text as written), strict variables."""
    return _PackageEnvironment(loader=_PackageLoader(), undefined=StrictUndefined, autoescape=False)


@cache
def html_env() -> Environment:
    """HTML pages and report sections: every value escaped (also in `from_string`),
    strict variables, block tags that leave no blank lines behind."""
    return _PackageEnvironment(
        loader=_PackageLoader(),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_prompt(name: str, **context: object) -> str:
    """The prompt template `"<package>:<path>"` rendered, without surrounding blank space."""
    return prompt_env().get_template(name).render(**context).strip()
