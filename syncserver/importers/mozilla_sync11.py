"""Reading a database of Mozilla's Python Sync 1.1 server (server-storage + server-reg).

The schema is the one its SQLAlchemy models created (reference §4.4 and
§5.3): accounts in ``user`` (new style: ``userid``, ``password``,
``accountStatus``, ``mail``) or ``users`` (old style: ``id``,
``password_hash``, ``status``, ``email``); records in ``wbo`` or, sharded,
``wbo0`` .. ``wboN`` keyed by the numeric user id in the column
``username``; per-user names of custom collections in ``collections``.
Collection ids below 100 without a row there are the standard ones.
Timestamps are already centiseconds; ``ttl`` is an absolute expiry in epoch
seconds, with 2100000000 meaning "never".
"""

import time

import sqlalchemy
from sqlalchemy import exc

from syncserver.importers import MigrationError, SourceAccount, SourceCollection
from syncserver.protocol.wbo import is_valid_collection
from syncserver.storage import NEVER_EXPIRES, StoredRecord

#: ``fixed_collections = true`` (2013): the corrected names.
FIXED_COLLECTION_IDS = {1: "clients", 2: "crypto", 3: "forms", 4: "history", 5: "keys",
                        6: "meta", 7: "bookmarks", 8: "prefs", 9: "tabs", 10: "passwords",
                        11: "addons"}
#: ``standard_collections = true`` (legacy): ids 1 and 5 had the wrong names.
STANDARD_COLLECTION_IDS = {**FIXED_COLLECTION_IDS, 1: "client", 5: "key"}
del STANDARD_COLLECTION_IDS[11]
COLLECTION_TABLES = {"fixed": FIXED_COLLECTION_IDS, "standard": STANDARD_COLLECTION_IDS}

#: The old server's default ttl: "no expiry".
NO_TTL = 2_100_000_000

_ACCOUNT_COLUMNS = {
    # table: (id, password hash, status, e-mail)
    "user": ("userid", "password", "accountStatus", "mail"),
    "users": ("id", "password_hash", "status", "email"),
}


class MozillaSync11Source:
    """The accounts of one old database, read lazily, one user at a time."""

    def __init__(self, url, collection_ids="fixed"):
        try:
            self.engine = sqlalchemy.create_engine(url)
            self.metadata = sqlalchemy.MetaData()
            self.metadata.reflect(self.engine)
        except (exc.ArgumentError, ImportError) as error:
            raise MigrationError(f"{url!r} is not a usable database URL ({error})") from None
        except exc.SQLAlchemyError as error:
            raise MigrationError(f"cannot read the old database: {error.orig or error}") from None
        self.standard_names = COLLECTION_TABLES[collection_ids]
        tables = self.metadata.tables
        self.accounts_table = next((tables[name] for name in _ACCOUNT_COLUMNS if name in tables),
                                   None)
        if self.accounts_table is None:
            raise MigrationError("the old database has neither a 'user' nor a 'users' table")
        shards = sorted((name for name in tables if name.startswith("wbo") and name[3:].isdigit()),
                        key=lambda name: int(name[3:]))
        if "wbo" in tables:
            self.wbo_tables = [tables["wbo"]]
        elif shards:
            self.wbo_tables = [tables[name] for name in shards]
        else:
            raise MigrationError("the old database has no 'wbo' (or 'wbo0'..) table")
        self.names_table = tables.get("collections")

    def close(self):
        self.engine.dispose()

    def count(self):
        with self.engine.connect() as connection:
            return connection.execute(
                sqlalchemy.select(sqlalchemy.func.count()).select_from(self.accounts_table)
            ).scalar()

    def accounts(self):
        """:class:`SourceAccount` per row of the accounts table, by id."""
        id_column, hash_column, status_column, mail_column = _ACCOUNT_COLUMNS[
            self.accounts_table.name]
        columns = self.accounts_table.c
        query = sqlalchemy.select(
            columns[id_column], columns["username"], columns[hash_column],
            columns[status_column], columns[mail_column]).order_by(columns[id_column])
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        for userid, username, password_hash, status, email in rows:
            yield SourceAccount(
                username=username, password_hash=password_hash, email=email or None,
                enabled=status == 1, userid=int(userid),
                collections=lambda userid=int(userid): self.collections(userid))

    def collections(self, userid):
        """The user's collections: timestamp = newest ``modified`` (as the old server said)."""
        names = dict(self.standard_names)
        wbo = self._wbo_table(userid)
        now_seconds = int(time.time())
        with self.engine.connect() as connection:
            if self.names_table is not None:
                names.update(connection.execute(sqlalchemy.select(
                    self.names_table.c.collectionid, self.names_table.c.name).where(
                    self.names_table.c.userid == userid)).all())
            stamps = connection.execute(
                sqlalchemy.select(wbo.c.collection, sqlalchemy.func.max(wbo.c.modified))
                .where(wbo.c.username == userid).group_by(wbo.c.collection)).all()
        for collection_id, timestamp in sorted(stamps):
            name = names.get(collection_id)
            if name is None or not is_valid_collection(name) or timestamp is None:
                continue  # an id without a name: the old server could not show it either
            yield SourceCollection(name, int(timestamp),
                                   self._records(wbo, userid, collection_id, now_seconds))

    def _records(self, wbo, userid, collection_id, now_seconds):
        columns = wbo.c
        query = sqlalchemy.select(
            columns.id, columns.modified, columns.payload, columns.sortindex, columns.parentid,
            columns.predecessorid, columns.ttl).where(
            columns.username == userid, columns.collection == collection_id,
            sqlalchemy.or_(columns.ttl.is_(None), columns.ttl > now_seconds)).order_by(columns.id)
        with self.engine.connect() as connection:
            for item_id, modified, payload, sortindex, parentid, predecessorid, ttl in (
                    connection.execute(query)):
                yield StoredRecord(
                    id=item_id, modified=None if modified is None else int(modified),
                    payload=payload, sortindex=sortindex, parentid=parentid,
                    predecessorid=predecessorid,
                    expires=NEVER_EXPIRES if ttl is None or ttl >= NO_TTL else int(ttl))

    def _wbo_table(self, userid):
        return self.wbo_tables[userid % len(self.wbo_tables)]
