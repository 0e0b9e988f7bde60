"""Deleting the storage of replaced Sync 1.5 uids: the second half of ``purge-expired``.

A Sync 1.5 account gets a new uid (new, empty storage) when its keys change
or it moves to another node (a node removed or downed, ``token-user
reassign``); the old row is marked replaced and never handed out again. Its
records stay where they were for ``tokenserver.replaced_grace_seconds`` (a
day by default: a device that fetched a token just before the change may
still finish its sync with it, for at most ``tokenserver.duration``), then
:func:`purge_replaced` deletes them and marks the row purged, so the next
run skips it. The row itself stays: its client state may never come back.

Where the records are:

- on this server (no node list when they were written, or the node whose
  URL is ``nodes.this_node`` or ``tokenserver.node_url``): deleted through
  the storage backend (:meth:`~syncserver.storage.StorageBackend.delete_user`
  of :func:`~syncserver.storage.sync15_user_id`, which also leaves a
  tombstone refusing late writes);
- on another node of the list: deleted through that node's 1.5 API
  (:mod:`syncserver.admin.node_requests`), with a token signed with the
  shared master secret; a node that cannot be reached is skipped for the
  rest of the run and its uids stay due (the command exits with status 1);
- on a node removed from the list: nothing can be reached, the row is
  marked purged.

Every step is idempotent (deleting deleted storage is harmless, marking is
conditional), so two runs at once, or a run beside the server answering
token requests, do no harm: a token request never reads ``purged_at`` and
never hands out a replaced uid.
"""

import dataclasses
import time

from syncserver.admin.node_requests import NodeRequestFailed, delete_storage_on_node
from syncserver.storage import sync15_user_id
from syncserver.tokenserver.endpoints import node_base_url


@dataclasses.dataclass
class ReplacedPurge:
    """What one run did (or, with ``dry_run``, would do)."""

    #: Replaced uids past the grace period, not purged before this run.
    due: int = 0
    #: Deleted through this server's storage backend.
    here: int = 0
    #: Deleted through their node's API.
    on_nodes: int = 0
    #: On a node no longer in the list: marked purged, nothing to delete.
    node_gone: int = 0
    #: Left for the next run (their node did not delete).
    failed: int = 0
    #: ``{node URL: the reason}`` for each node that failed.
    failures: dict = dataclasses.field(default_factory=dict)

    def as_json(self):
        return dataclasses.asdict(self)


def local_node_urls(settings):
    """The node URLs whose storage is this server's own storage backend."""
    urls = set()
    for url in (settings.nodes.this_node, settings.tokenserver.node_url):
        if url:
            try:
                urls.add(node_base_url(url))
            except ValueError:
                continue
    return urls


class UidStorage:
    """Deletes the records of Sync 1.5 uids wherever they are: here, or through their node.

    ``storage`` is this server's storage backend, or None when this process
    keeps no records (a tokenserver only); ``settings`` say which node URLs
    are this server and hold the master secret that signs the nodes' tokens.
    """

    def __init__(self, settings, storage, *, delete_on_node=delete_storage_on_node,
                 timeout=10.0):
        self.storage = storage
        self.here_urls = local_node_urls(settings)
        #: Where tokens sent accounts while the node list was empty, for a
        #: tokenserver that keeps no records (``tokenserver.node_url``).
        self.single_node_url = settings.tokenserver.node_url or None
        self.secrets = settings.global_.master_secret
        self._delete_on_node = delete_on_node
        self.timeout = timeout

    def where(self, node_url, node_state):
        """``(place, node URL)``: ``"here"``, ``"node"`` (through its API) or ``"gone"``.

        ``node_state`` as :class:`~syncserver.tokenserver.users.ReplacedUid`
        has it. A uid without node was written where tokens named this
        server: its own storage, or ``tokenserver.node_url`` for a
        tokenserver that keeps no records.
        """
        if node_state == "listed":
            if self.storage is not None and node_base_url(node_url) in self.here_urls:
                return "here", None
            return "node", node_url
        if node_state == "this server":
            if self.storage is not None:
                return "here", None
            if self.single_node_url:
                return "node", self.single_node_url
        return "gone", None

    def delete(self, uid, fxa_uid, node_url, node_state):
        """Delete the uid's records; returns ``(place, node URL)`` as :meth:`where`.

        Raises :class:`~syncserver.admin.node_requests.NodeRequestFailed`.
        """
        place, url = self.where(node_url, node_state)
        if place == "here":
            self.storage.delete_user(sync15_user_id(uid))
        elif place == "node":
            if not self.secrets:
                raise NodeRequestFailed("global.master_secret is not set here")
            self._delete_on_node(url, uid, fxa_uid, self.secrets[0], timeout=self.timeout)
        return place, url


def purge_replaced(users, storage, settings, *, now=None, batch_size=1000, dry_run=False,
                   delete_on_node=delete_storage_on_node, timeout=10.0):
    """Delete the storage of every replaced uid past the grace period; a :class:`ReplacedPurge`.

    ``users`` is the :class:`~syncserver.tokenserver.users.TokenUserBackend`,
    ``storage`` this server's :class:`~syncserver.storage.StorageBackend` or
    None (a tokenserver serving no storage itself); ``settings`` the parsed
    settings (grace period, master secret, which nodes are this server).
    """
    now = time.time() if now is None else now
    cutoff_ms = int((now - settings.tokenserver.replaced_grace_seconds) * 1000)
    uid_storage = UidStorage(settings, storage, delete_on_node=delete_on_node, timeout=timeout)
    summary = ReplacedPurge()
    after = 0
    while True:
        batch = users.replaced_uids(cutoff_ms, batch_size, after_uid=after)
        if not batch:
            return summary
        after = batch[-1].uid
        summary.due += len(batch)
        if dry_run:
            continue
        done = []
        for replaced in batch:
            _, url = uid_storage.where(replaced.node_url, replaced.node_state)
            node = node_base_url(url) if url else None
            if node in summary.failures:
                summary.failed += 1  # this node failed already: not asked again this run
                continue
            try:
                where, _ = uid_storage.delete(replaced.uid, replaced.fxa_uid,
                                              replaced.node_url, replaced.node_state)
            except NodeRequestFailed as error:
                summary.failures[node] = str(error)
                summary.failed += 1
                continue
            if where == "here":
                summary.here += 1
            elif where == "node":
                summary.on_nodes += 1
            else:
                summary.node_gone += 1
            done.append(replaced.uid)
        if done:
            users.mark_purged(done)
