"""What the Redis cache runs inside Redis: its keys and its Lua scripts.

:mod:`syncserver.storage.redis` decides when each script runs. Every read or
change of the cache is one script, so Redis applies it atomically. Keys
(``P`` is ``storage.redis_key_prefix``):

- ``P ns``: the current namespace. Every cached answer lives under it, so
  replacing it drops the whole cache at once.
- ``P u:<ns>:<user>``: a hash of the user's cached answers, plus ``gen``,
  the user's generation, raised by every write.
- ``P w:<user>``: a sorted set of the user's writes in progress (score: the
  time, in Redis's clock, after which a mark left by a crashed writer stops
  counting).

Redis forgets loaded scripts when it restarts, even when it reloads its data
from disk; :class:`CacheScripts` takes the ``NOSCRIPT`` answer that follows
as the sign of a restart and starts a new namespace before it trusts
anything cached again.
"""

import hashlib

from redis.exceptions import NoScriptError

_COMMON = """
local prefix = ARGV[1]
local function namespace(create)
  local ns = redis.call('GET', prefix .. 'ns')
  if not ns and create then
    local time = redis.call('TIME')
    ns = time[1] .. '.' .. time[2] .. '.' .. redis.call('INCR', prefix .. 'nsseq')
    redis.call('SET', prefix .. 'ns', ns)
  end
  return ns
end
local function writes_in_progress(user)
  local now = redis.call('TIME')[1]
  return redis.call('ZCOUNT', prefix .. 'w:' .. user, '(' .. now, '+inf')
end
"""

#: ARGV: prefix, user, ttl_ms, field... -> ns, gen, writes in progress, values...
READ = _COMMON + """
local user = ARGV[2]
local ns = namespace(true)
local key = prefix .. 'u:' .. ns .. ':' .. user
local reply = {ns, redis.call('HGET', key, 'gen') or '0', writes_in_progress(user)}
for i = 4, #ARGV do reply[#reply + 1] = redis.call('HGET', key, ARGV[i]) end
redis.call('PEXPIRE', key, ARGV[3])
return reply
"""

#: ARGV: prefix, user, ns, gen, ttl_ms, field, value, ... -> 1 if stored.
#: Stores only when no write started or ended since READ gave ``ns`` and ``gen``.
STORE = _COMMON + """
local user = ARGV[2]
if namespace(false) ~= ARGV[3] or writes_in_progress(user) > 0 then return 0 end
local key = prefix .. 'u:' .. ARGV[3] .. ':' .. user
if (redis.call('HGET', key, 'gen') or '0') ~= ARGV[4] then return 0 end
redis.call('HSET', key, 'gen', ARGV[4])
for i = 6, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
redis.call('PEXPIRE', key, ARGV[5])
return 1
"""

#: ARGV: prefix, user, token, mark_seconds. Marks a write as in progress.
BEGIN_WRITE = _COMMON + """
local key = prefix .. 'w:' .. ARGV[2]
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
redis.call('ZADD', key, now + tonumber(ARGV[4]), ARGV[3])
redis.call('EXPIRE', key, tonumber(ARGV[4]) + 1)
return 1
"""

#: ARGV: prefix, ttl_ms, user, token, user, token, ... (token may be '').
#: Ends those writes: drops their marks and the users' cached answers, raises gen.
INVALIDATE = _COMMON + """
local ns = namespace(false)
for i = 3, #ARGV, 2 do
  local user = ARGV[i]
  if ARGV[i + 1] ~= '' then redis.call('ZREM', prefix .. 'w:' .. user, ARGV[i + 1]) end
  if ns then
    local key = prefix .. 'u:' .. ns .. ':' .. user
    local gen = redis.call('HINCRBY', key, 'gen', 1)
    redis.call('DEL', key)
    redis.call('HSET', key, 'gen', gen)
    redis.call('PEXPIRE', key, ARGV[2])
  end
end
return 1
"""

#: ARGV: prefix. Drops every cached answer of every user at once.
NEW_NAMESPACE = _COMMON + """
redis.call('DEL', prefix .. 'ns')
return namespace(true)
"""

SCRIPTS = {
    "read": READ,
    "store": STORE,
    "begin_write": BEGIN_WRITE,
    "invalidate": INVALIDATE,
    "new_namespace": NEW_NAMESPACE,
}


class CacheScripts:
    """Runs the scripts by SHA; after a ``NOSCRIPT`` (a restarted Redis) starts a new namespace."""

    def __init__(self, client, prefix):
        self.client = client
        self.prefix = prefix
        self._shas = {name: hashlib.sha1(source.encode()).hexdigest()
                      for name, source in SCRIPTS.items()}

    def run(self, name, *args):
        """Run script ``name`` with ``args`` after the prefix; Redis errors propagate."""
        try:
            return self.client.evalsha(self._shas[name], 0, self.prefix, *args)
        except NoScriptError:
            self._after_restart()
            return self.client.evalsha(self._shas[name], 0, self.prefix, *args)

    def _after_restart(self):
        # The namespace goes first: until it is replaced, a restored copy of
        # old answers must not be read, and reads need the scripts loaded below.
        self.client.eval(NEW_NAMESPACE, 0, self.prefix)
        for source in SCRIPTS.values():
            self.client.script_load(source)
