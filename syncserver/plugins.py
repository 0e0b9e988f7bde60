"""Finding a backend class from a setting: a short alias or a dotted path.

``storage.backend = sql`` and
``storage.backend = syncserver.storage.sql.SQLStorage`` name the same class;
``storage.backend = mypackage.mystore.MyStorage`` names a user's own. Either
way the class is checked against its family's interface before the server
starts, so a plugin missing a method fails at start-up, not on a request.
"""

import importlib
import inspect

from syncserver.errors import ConfigError
from syncserver.extras import is_optional_module, missing_module


class Plugin:
    """What every backend family's interface shares: how the server builds a backend.

    A backend declares its own keys as a dataclass, :attr:`settings_class`
    (each field is a key of its section); the server converts and checks them
    at start-up and passes the instance as ``settings.backend_settings``.
    The family's interface declares the abstract ``from_settings``.
    """

    #: The dataclass of the backend's own keys (None: it has none).
    settings_class = None

    #: Deprecated (use :attr:`settings_class`): extra keys of the section, given
    #: unconverted in ``settings.options``.
    extra_settings = ()

    @classmethod
    def open(cls, settings, databases):
        """How the server builds the backend: ``from_settings``, sharing databases.

        ``databases`` (a :class:`syncserver.db.DatabaseRegistry`) gives the
        process's :class:`~syncserver.db.Database` for a URL, shared with
        every other backend using it; the server creates or checks the
        schema of every database asked for. The default ignores it.
        """
        return cls.from_settings(settings)


def resolve_backend(key, value, aliases, interface):
    """Return the class named by ``value`` for the setting ``key``.

    ``aliases`` maps short names to dotted paths. The class must subclass
    ``interface`` or provide every one of its abstract methods.
    """
    dotted = aliases.get(value, value)
    module_name, _, attribute = dotted.rpartition(".")
    if not module_name:
        known = ", ".join(sorted(aliases))
        raise ConfigError(
            f"{key} = {value!r} is neither a known backend ({known}) "
            "nor a dotted path such as 'package.module.ClassName'.")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        if is_optional_module(error):
            what, install = missing_module(error)
            raise ConfigError(f"{key} = {value!r} needs {what}, which is not installed: "
                              f"{install}.") from None
        raise ConfigError(
            f"{key} = {value!r}: cannot import module {module_name!r} ({error}).") from None
    backend = getattr(module, attribute, None)
    if backend is None:
        raise ConfigError(f"{key} = {value!r}: module {module_name!r} has no {attribute!r}.")
    check_implements(key, value, backend, interface)
    return backend


def check_implements(key, value, backend, interface):
    """Raise :class:`ConfigError` unless ``backend`` is a complete ``interface`` class."""
    if not inspect.isclass(backend):
        raise ConfigError(f"{key} = {value!r} is not a class.")
    missing = sorted(
        name for name in getattr(interface, "__abstractmethods__", ())
        if not callable(getattr(backend, name, None))
        or getattr(getattr(backend, name), "__isabstractmethod__", False))
    if missing:
        raise ConfigError(
            f"{key} = {value!r} does not implement {interface.__module__}.{interface.__name__}: "
            f"missing {', '.join(missing)}.")


def open_backend(interface, backend, settings, databases):
    """Build ``backend`` as the server does: its ``open`` when it subclasses ``interface``.

    A class that only provides the interface's methods (without subclassing
    it) has no ``open``: it is built with ``from_settings`` and shares nothing.
    """
    if isinstance(backend, type) and issubclass(backend, interface):
        return backend.open(settings, databases)
    return backend.from_settings(settings)
