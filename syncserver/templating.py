"""The Jinja2 templates of the HTML pages and of the reset mail (``syncserver/templates/``).

HTML templates are autoescaped: whatever a user typed is shown, never run.
Text templates (the mail) are not, since they are not HTML.
"""

import functools

import jinja2


@functools.cache
def environment():
    """The one template environment (built on first use, shared by every thread)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("syncserver", "templates"),
        autoescape=jinja2.select_autoescape(["html"], default_for_string=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render(name, **context):
    """Render the template ``name`` with ``context``."""
    return environment().get_template(name).render(**context)
