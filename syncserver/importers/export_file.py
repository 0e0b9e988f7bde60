"""The export file: one user's account and records as JSON lines.

Line 1 is the account, then one line per collection followed by one line
per record of it::

    {"type": "account", "format": 1, "username": ..., "userid": 42, "email": ...,
     "enabled": true, "password_hash": "$argon2id$..."}
    {"type": "collection", "name": "bookmarks", "timestamp": 137000000010}
    {"type": "record", "collection": "bookmarks", "id": "abc", "modified": 137000000010,
     "payload": "...", "sortindex": 5, "parentid": null, "predecessorid": null,
     "expires": 9999999999}

Timestamps are integer centiseconds and ``expires`` is absolute epoch
seconds, so an import restores everything exactly. The password hash is
included so the account keeps its password: keep export files private.
"""

import dataclasses
import json

from syncserver.importers import MigrationError, SourceAccount, SourceCollection
from syncserver.protocol.wbo import is_valid_collection, is_valid_item_id
from syncserver.storage import StoredRecord

FORMAT_VERSION = 1
_RECORD_FIELDS = [field.name for field in dataclasses.fields(StoredRecord)]


def write_export(stream, user, password_hash, storage):
    """Write ``user`` (an auth :class:`~syncserver.auth.User`) and all its records.

    Returns ``(collections, records)`` counts.
    """
    _write(stream, {"type": "account", "format": FORMAT_VERSION, "username": user.username,
                    "userid": user.user_id, "email": user.email, "enabled": user.enabled,
                    "password_hash": password_hash})
    collections = records = 0
    for name, timestamp in sorted(storage.get_collection_timestamps(user.user_id).items()):
        _write(stream, {"type": "collection", "name": name, "timestamp": timestamp})
        collections += 1
        for record in storage.export_records(user.user_id, name):
            _write(stream, {"type": "record", "collection": name,
                            **dataclasses.asdict(record)})
            records += 1
    return collections, records


def _write(stream, value):
    stream.write(json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n")


def read_export(path):
    """The account in an export file, as a :class:`SourceAccount` (a one-element list)."""
    lines = _read_lines(path)
    if not lines or lines[0].get("type") != "account":
        raise MigrationError(
            f"{path} is not a syncserver export: it does not start with an account")
    account = lines[0]
    if account.get("format") != FORMAT_VERSION:
        raise MigrationError(
            f"{path} has export format {account.get('format')!r}; this version reads "
            f"format {FORMAT_VERSION}")
    collections = {}
    for number, line in enumerate(lines[1:], start=2):
        kind = line.get("type")
        if kind == "collection":
            if not is_valid_collection(line.get("name", "")) or not isinstance(
                    line.get("timestamp"), int):
                raise MigrationError(f"{path} line {number}: invalid collection entry")
            collections[line["name"]] = SourceCollection(line["name"], int(line["timestamp"]), [])
        elif kind == "record" and line.get("collection") in collections:
            collections[line["collection"]].records.append(_record(path, number, line))
        else:
            raise MigrationError(f"{path} line {number}: unexpected {kind!r} entry")
    try:
        userid = int(account["userid"]) if account.get("userid") is not None else None
        return [SourceAccount(
            username=account["username"], password_hash=account.get("password_hash"),
            email=account.get("email"), enabled=bool(account.get("enabled", True)),
            userid=userid, collections=lambda: list(collections.values()))]
    except (KeyError, TypeError, ValueError) as error:
        raise MigrationError(f"{path}: the account line is incomplete ({error})") from None


_FIELD_TYPES = {"id": (str,), "modified": (int, type(None)), "payload": (str, type(None)),
                "sortindex": (int, type(None)), "parentid": (str, type(None)),
                "predecessorid": (str, type(None)), "expires": (int,)}


def _record(path, number, line):
    fields = {name: line[name] for name in _RECORD_FIELDS if name in line}
    for name, value in fields.items():
        if not isinstance(value, _FIELD_TYPES[name]) or isinstance(value, bool):
            raise MigrationError(f"{path} line {number}: {name} has the wrong type")
    if not is_valid_item_id(fields.get("id", "")):
        raise MigrationError(f"{path} line {number}: the record id is missing or invalid")
    return StoredRecord(**fields)


def _read_lines(path):
    try:
        with open(path, encoding="utf-8") as stream:
            return [_parse(path, number, text) for number, text in enumerate(stream, start=1)
                    if text.strip()]
    except OSError as error:
        raise MigrationError(f"cannot read {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise MigrationError(f"{path} is not UTF-8 text") from None


def _parse(path, number, text):
    try:
        value = json.loads(text)
    except ValueError:
        raise MigrationError(f"{path} line {number} is not JSON") from None
    if not isinstance(value, dict):
        raise MigrationError(f"{path} line {number} is not a JSON object")
    return value
