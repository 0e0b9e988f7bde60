"""What a storage node checks on each storage request: its own flags, then the user's node.

Active when ``nodes.this_node`` names this server's entry in the node list:

- ``downed``: every storage request gets 503 with ``Retry-After`` and
  ``X-Weave-Backoff`` (both ``global.retry_after``) before authentication.
- ``backoff`` > 0: requests are served and their responses carry
  ``X-Weave-Backoff: <backoff>``.
- ``auth.check_node``: a user whose assignment is not this node (another
  node, or none yet) gets 401; its client then asks ``node/weave`` again.

Neither check may cost a query per request. The node's flags are read at
most once per ``nodes.cache_seconds`` per process, so an operator's change
takes effect within that delay; if the read fails, the last known flags stay.
"This user is assigned here" is remembered for the same time; any other
answer is asked again on every request, so a user just (re)assigned here is
never refused from a stale cache. A user moved away from this node may thus
still be served here for up to ``nodes.cache_seconds``.
"""

import collections
import logging
import threading
import time

from webob import exc

from syncserver.nodes import NodesUnavailable
from syncserver.web.request_context import client_address

logger = logging.getLogger(__name__)
security_log = logging.getLogger("syncserver.security")

#: Users remembered as "assigned here" per process; the oldest are forgotten first.
MAX_REMEMBERED_USERS = 100_000

DOWN_MESSAGE = "server issue: node marked as down"


class NodeGuard:
    """The checks above, for one node; thread-safe, one per process.

    ``clock`` (seconds, monotonic) is for tests that step time by hand.
    """

    def __init__(self, backend, this_node, check_node=False, cache_seconds=5,
                 retry_after=1800, clock=time.monotonic):
        self.backend = backend
        self.this_node = this_node
        self.check_node = check_node
        self.cache_seconds = cache_seconds
        self.retry_after = retry_after
        self._clock = clock
        self._flags = None
        self._flags_until = None
        self._known_here = collections.OrderedDict()
        self._known_here_lock = threading.Lock()

    def admit(self, request):
        """Refuse with 503 when this node is downed; else return its backoff seconds (0: none)."""
        node = self.node_flags()
        if node is None:
            return 0
        if node.downed:
            raise self._down_error()
        return node.backoff

    def check_user(self, request, user):
        """With ``auth.check_node``, 401 unless ``user`` is assigned to this node."""
        if not self.check_node or self._remembered_here(user.username):
            return
        assigned = self.backend.assigned_node(user.username)
        if assigned == self.this_node:
            self._remember_here(user.username)
            return
        security_log.warning(
            "AuthFail: user %r is assigned to %s, not this node, from %s on %s %s",
            user.username, assigned or "no node", client_address(request),
            request.method, request.path_info)
        raise exc.HTTPUnauthorized()

    def node_flags(self):
        """This node's :class:`~syncserver.nodes.Node` (cached), or None when it is not listed."""
        now = self._clock()
        if self._flags_until is not None and now < self._flags_until:
            return self._flags
        try:
            node = self.backend.get_node(self.this_node)
        except NodesUnavailable as error:
            logger.warning("cannot read the flags of node %s, keeping the last known: %s",
                           self.this_node, error)
            node = self._flags
        else:
            if node is None and (self._flags_until is None or self._flags is not None):
                logger.warning("nodes.this_node = %s is not in the node list: no node flags apply",
                               self.this_node)
        self._flags = node
        self._flags_until = now + self.cache_seconds
        return node

    def _remembered_here(self, username):
        with self._known_here_lock:
            until = self._known_here.get(username)
            if until is None:
                return False
            if self._clock() < until:
                return True
            del self._known_here[username]
            return False

    def _remember_here(self, username):
        if self.cache_seconds <= 0:
            return
        with self._known_here_lock:
            self._known_here[username] = self._clock() + self.cache_seconds
            self._known_here.move_to_end(username)
            while len(self._known_here) > MAX_REMEMBERED_USERS:
                self._known_here.popitem(last=False)

    def _down_error(self):
        seconds = str(self.retry_after)
        error = exc.HTTPServiceUnavailable(
            headers={"Retry-After": seconds, "X-Weave-Backoff": seconds})
        error.content_type = "application/json"
        error.charset = None
        error.body = f'"{DOWN_MESSAGE}"'.encode("ascii")
        return error
