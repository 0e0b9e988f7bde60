"""Every key a configuration accepts, described from the code: the sections and the backends' own.

Why: the keys of a section are the fields of its dataclass, and a backend's
own keys the fields of its ``settings_class`` (a plugin's included). Reading
them from the code, with the ``#:`` comment above each field as its help,
lets ``syncserver-admin config`` list exactly what a server accepts, and
lets the tests keep docs/configuration.rst in step with the code.
"""

import ast
import dataclasses
import functools
import inspect
import textwrap

from syncserver.settings.sections import _SECTIONS, NOT_KEYS


@dataclasses.dataclass(frozen=True)
class KeyDescription:
    """One ``section.option`` key: its type, default and help text (may be empty)."""

    key: str
    type: str
    default: object
    help: str


def section_keys(section, cls):
    """The keys of a section's dataclass (or a backend's ``settings_class``)."""
    helps = field_help(cls)
    keys = []
    for field in dataclasses.fields(cls):
        if field.name in NOT_KEYS:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = None
        keys.append(KeyDescription(f"{section}.{field.name}", _type_name(field.type), default,
                                   helps.get(field.name, "")))
    return keys


def core_keys():
    """The keys of every section, whatever the backends."""
    return [key for section, cls in _SECTIONS.items() for key in section_keys(section, cls)]


def backend_keys(settings):
    """The keys declared by the backends a parsed :class:`Settings` names (plugins too)."""
    keys = []
    for section in ("storage", "auth", "nodes", "captcha"):
        values = getattr(settings, section)
        backends = [values.backend, getattr(values, "wrapped_backend", None)]
        for backend in backends:
            settings_class = getattr(backend, "settings_class", None) if backend else None
            if settings_class is not None:
                keys += section_keys(section, settings_class)
    return keys


@functools.cache
def field_help(cls):
    """``{field: text}`` from the ``#:`` comments written above a dataclass's fields."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    lines = source.splitlines()
    helps = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            comment = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#:"):
                comment.insert(0, lines[row].strip()[2:].strip())
                row -= 1
            helps[node.target.id] = " ".join(comment)
    return helps


def _type_name(annotation):
    if isinstance(annotation, str):
        return annotation
    return getattr(annotation, "__name__", str(annotation))
