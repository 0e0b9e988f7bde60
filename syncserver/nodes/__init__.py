"""The node-assignment plugin interface: which storage node serves which user.

A deployment with several storage servers ("nodes") behind one User API
keeps a list of nodes and, per user, the node it was given. The User API
(``GET /user/1.0/<u>/node/weave``) asks :meth:`NodeBackend.assign_node`; a
storage node asks :meth:`NodeBackend.assigned_node` to refuse users assigned
elsewhere (``auth.check_node``) and :meth:`NodeBackend.get_node` for its own
``downed`` and ``backoff`` flags (see :mod:`syncserver.web.node_guard`).

The assignment rule every backend follows: among the nodes that are
``available`` and not ``downed`` and whose ``current_load`` is below their
``capacity``, the one with the smallest fraction of its capacity in use
(ties: the smaller load, then the node added first). Assigning counts the
user in ``current_load`` atomically, across processes: two first requests
for the same user end with one assignment, counted once.

Node URLs are stored normalised (scheme, trailing ``/``) by
:func:`syncserver.settings.normalize_node_url`; usernames are already valid.
"""

import abc
import dataclasses

from syncserver.errors import BackendUnavailable
from syncserver.plugins import Plugin


class NodeError(Exception):
    """Base class of every error a node backend raises on purpose."""


class NodesUnavailable(NodeError, BackendUnavailable):
    """The database behind the node list did not answer (503)."""

    service = "nodes"


class NodeExists(NodeError):
    """A node with that URL is already in the list."""


class NodeNotFound(NodeError):
    """No node has that URL."""


@dataclasses.dataclass(frozen=True)
class Node:
    """A storage node as operators and the server see it.

    ``available`` false stops new assignments to the node (its users stay);
    ``downed`` true stops new assignments and makes the node answer its
    storage requests with 503; ``backoff`` > 0 asks its clients to slow down
    (``X-Weave-Backoff: <backoff>``) while still serving them.
    """

    url: str
    capacity: int
    current_load: int = 0
    available: bool = True
    downed: bool = False
    backoff: int = 0


class NodeBackend(Plugin, abc.ABC):
    """What a node-assignment backend must provide.

    Named in ``nodes.backend`` (alias or dotted path), built with
    :meth:`from_settings`. Every method may raise :class:`NodesUnavailable`
    when its service is down. Thread-safe: one instance serves every thread.
    """

    @classmethod
    @abc.abstractmethod
    def from_settings(cls, settings):
        """Build the backend from a :class:`syncserver.settings.NodeSettings`."""

    def is_healthy(self):
        """True when the node list can be read (the heartbeat's check); never raises.

        The default reads the whole list; a backend may do something cheaper.
        """
        try:
            self.list_nodes()
        except NodesUnavailable:
            return False
        return True

    @abc.abstractmethod
    def list_nodes(self):
        """Every :class:`Node`, in the order they were added."""

    @abc.abstractmethod
    def get_node(self, url):
        """The :class:`Node` with that URL, or ``None``."""

    @abc.abstractmethod
    def add_node(self, url, capacity, available=True, downed=False, backoff=0):
        """Add a node with no users and return it. Raises :class:`NodeExists`."""

    @abc.abstractmethod
    def update_node(self, url, capacity=None, available=None, downed=None, backoff=None):
        """Change the given fields (None leaves one as it is); return the :class:`Node`.

        Raises :class:`NodeNotFound`. Lowering the capacity below the load
        moves nobody: the node just takes no new users.
        """

    @abc.abstractmethod
    def unassign_all(self, url):
        """Forget every assignment to the node and zero its load; return how many.

        Its users get a node again (by the usual rule) on their next
        ``node/weave``. Raises :class:`NodeNotFound`.
        """

    @abc.abstractmethod
    def remove_node(self, url):
        """Remove the node and its assignments; return how many users it had.

        Raises :class:`NodeNotFound`.
        """

    @abc.abstractmethod
    def assigned_node(self, username):
        """The URL of the user's node, or ``None`` when it has none. Never assigns."""

    @abc.abstractmethod
    def assign_node(self, username):
        """The user's node URL, assigning one by the rule above if it has none.

        Returns ``None`` when the user has no node and none can take it.
        """

    @abc.abstractmethod
    def release_user(self, username):
        """Forget the user's assignment and free its slot; True if it had one."""

    def close(self):
        """Release connections and pools. The default does nothing."""
