"""A master secret made on first start, when the ini leaves ``global.master_secret`` empty.

Why: Sync 1.5 tokens are signed with the master secret, and a newcomer's
``development.ini`` should work without inventing one. The secret is made
once, from :mod:`secrets`, and kept in ``var/master_secret`` next to the ini
file (mode 0600), so tokens survive restarts and every process started from
the same ini reads the same one. Two processes starting at once race on an
exclusive create: the loser reads the winner's file.
"""

import dataclasses
import os
import secrets

from syncserver.errors import ConfigError

FILE_NAME = os.path.join("var", "master_secret")


def with_master_secret(settings, here):
    """``settings`` with ``global.master_secret`` filled from the generated file when empty.

    Only when something signs or checks tokens (``storage15.enabled`` or
    ``tokenserver.enabled``); ``here`` is the ini file's folder (PasteDeploy's
    ``here``), None when the app was built without one, which then needs the
    key set.
    """
    needed_by = [key for key, enabled in (("storage15.enabled", settings.storage15.enabled),
                                          ("tokenserver.enabled", settings.tokenserver.enabled))
                 if enabled]
    if settings.global_.master_secret or not needed_by:
        return settings
    if not here:
        raise ConfigError(f"global.master_secret is required for Sync 1.5 "
                          f"({', '.join(needed_by)}): one or more long random values separated "
                          "by spaces.")
    secret = read_or_create(os.path.join(here, FILE_NAME))
    return dataclasses.replace(settings, global_=dataclasses.replace(
        settings.global_, master_secret=(secret,)))


def read_or_create(path):
    """The secret in ``path``, written there first (0600) when the file does not exist."""
    folder = os.path.dirname(path)
    try:
        os.makedirs(folder, mode=0o700, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(descriptor, "w", encoding="ascii") as out:
                out.write(secrets.token_hex(32) + "\n")
        with open(path, encoding="ascii") as source:
            secret = source.read().strip()
    except OSError as error:
        raise ConfigError(f"global.master_secret is empty and {path} cannot be kept: "
                          f"{error.strerror}.") from None
    if len(secret) < 32:  # a file cut short by a crash while being written: start over
        os.unlink(path)
        return read_or_create(path)
    return secret
