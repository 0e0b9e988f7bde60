"""Turning the text of an ini value into the value a setting holds.

Shared by every section: booleans, whole and decimal numbers, ``${NAME}``
references to the environment, lists of networks, choices and URLs. Each
raises :class:`~syncserver.errors.ConfigError` with a sentence naming the key.
"""

import ipaddress
import os
import re

from syncserver.errors import ConfigError

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0", ""}

#: ``${NAME}`` anywhere in a value reads the environment; ``$${`` writes a literal ``${``.
_ENVIRONMENT_REFERENCE = re.compile(r"\$(\$?)\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_environment(key, value):
    """Replace each ``${NAME}`` in ``value`` by the environment variable; unset is an error.

    Substituted text is not expanded again, so a password may contain ``$``.
    """
    def substitute(match):
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if name not in os.environ:
            raise ConfigError(
                f"{key} refers to the environment variable {name}, which is not set.")
        return os.environ[name]

    return _ENVIRONMENT_REFERENCE.sub(substitute, value)


def parse_networks(key, value):
    """``127.0.0.1 10.0.0.0/8, ::1`` -> a tuple of :mod:`ipaddress` networks."""
    networks = []
    for item in re.split(r"[\s,]+", str(value).strip()):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ConfigError(
                f"{key} must list IP addresses or networks (such as 10.0.0.0/8), "
                f"not {item!r}.") from None
    return tuple(networks)


def parse_words(key, value):
    """``a b,c`` -> ``("a", "b", "c")``: words separated by spaces or commas."""
    return tuple(word for word in re.split(r"[\s,]+", str(value).strip()) if word)


#: A host name or address, with an optional port (``sync.example.org``, ``[::1]:5000``, ``::1``).
_HOST_ENTRY = re.compile(
    r"(?:[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.?|\[[0-9A-Fa-f:.]+\]|[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*)"
    r"(?::[0-9]{1,5})?")


def parse_hosts(key, value):
    """``sync.example.org localhost:5000, [::1]`` -> a tuple of host names (with their ports)."""
    hosts = []
    for item in re.split(r"[\s,]+", str(value).strip()):
        if not item:
            continue
        if not _HOST_ENTRY.fullmatch(item):
            raise ConfigError(
                f"{key} must list host names or addresses, each with an optional port "
                f"(such as sync.example.org or localhost:5000), not {item!r}.")
        hosts.append(item.lower())
    return tuple(hosts)


def parse_choice(key, value, choices):
    text = str(value).strip().lower()
    if text not in choices:
        raise ConfigError(f"{key} must be one of {', '.join(choices)}, not {value!r}.")
    return text


def normalize_node_url(url):
    """``sync.example.org`` -> ``https://sync.example.org/``; keeps given schemes."""
    if not url.startswith(("http://", "https://")):
        url = "https://" + url
    if not url.endswith("/"):
        url += "/"
    return url


def convert(key, value, annotation):
    """``value`` as the field type ``annotation`` (bool, int, float or text) of ``key``."""
    if annotation in (bool, "bool"):
        text = str(value).lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{key} must be true or false, not {value!r}.")
    if annotation in (int, "int"):
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a whole number, not {value!r}.") from None
        if number < 0:
            raise ConfigError(f"{key} must not be negative (got {number}).")
        return number
    if annotation in (float, "float"):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} must be a number, not {value!r}.") from None
        if not number >= 0 or number == float("inf"):
            raise ConfigError(f"{key} must be a finite number, not negative (got {value!r}).")
        return number
    # Optional[str] / str: empty means unset (${NAME} was expanded by parse_settings).
    return str(value) or None
