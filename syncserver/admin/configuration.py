"""``syncserver-admin config``: every key this configuration accepts, with its default and value.

The keys are read from the code (:mod:`syncserver.settings.reference`): the
sections' own and those the configured backends declare, a plugin's too.
Values that look secret (passwords, secrets, tokens, keys) are never shown.
"""

import re

import sqlalchemy

from syncserver.settings import reference

_SECRET = re.compile(r"(password|secret|token|private_key)", re.IGNORECASE)


def register(subparsers):
    config = subparsers.add_parser(
        "config", help="every key the configuration accepts: default, value, meaning",
        description="Lists the keys of every section and those the configured backends "
                    "(plugins included) declare. Secrets are hidden.")
    config.add_argument("--json", action="store_true", help="a JSON array")
    config.set_defaults(handler=show_configuration)


def show_configuration(context, args):
    raw = context.raw_settings
    keys = reference.core_keys() + reference.backend_keys(context.settings)
    rows = []
    for description in keys:
        value = raw.get(description.key)
        rows.append({"key": description.key, "type": description.type,
                     "default": _shown(description.key, description.default),
                     "value": _shown(description.key, value) if value is not None else None,
                     "help": description.help})
    if args.json:
        context.echo_json(rows)
        return 0
    context.echo_table(["key", "value", "default"],
                       [(row["key"], row["value"], row["default"]) for row in rows])
    return 0


def _shown(key, value):
    if value is None or value == "":
        return None
    if _SECRET.search(key):
        return "(hidden)"
    text = value if isinstance(value, str) else _plain(value)
    if "://" in text:
        try:
            return sqlalchemy.engine.make_url(text).render_as_string(hide_password=True)
        except sqlalchemy.exc.ArgumentError:
            return text
    return text


def _plain(value):
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if isinstance(value, tuple):
        return " ".join(str(item) for item in value)
    return str(value)
