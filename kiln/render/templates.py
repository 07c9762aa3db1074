"""The Jinja environment every rendered file comes from (build contexts, deployments) and turning a template
problem into one error naming the template and line. jinja2 is imported when a template is rendered, so the
modules naming targets and templates stay cheap to import."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from kiln.errors import KilnError

if TYPE_CHECKING:
    import jinja2


def environment(folder: Path, filters: dict[str, Callable[[Any], str]] | None = None) -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["shq"] = lambda v: shlex.quote(str(v))
    env.filters["dq"] = lambda v: json.dumps(str(v)).replace("$", "\\$")
    env.filters.update(filters or {})
    env.policies["json.dumps_kwargs"] = {"sort_keys": True, "ensure_ascii": False}
    return env


def render_template(env: jinja2.Environment, template: str, values: dict[str, Any], shown: str = "templates") -> str:
    """`shown` is how messages name the template folder."""
    import jinja2

    try:
        return env.get_template(template).render(values)
    except jinja2.TemplateNotFound:
        raise KilnError("template not found", f"{shown}/{template}", "restore it from the repository") from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc, template)
        raise KilnError(f"uses an undefined value ({exc.message})", f"{shown}/{template}:{line}",
                        "fix the name or add the value to the renderer") from None
    except jinja2.TemplateSyntaxError as exc:
        raise KilnError(f"template syntax error ({exc.message})", f"{shown}/{template}:{exc.lineno}",
                        "fix the template") from None


def _template_line(exc: BaseException, template: str) -> int | str:
    tb, line = exc.__traceback__, "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(template):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line
