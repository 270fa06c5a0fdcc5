"""The Lua scripts that change a tenant's entries: each change and its log event are atomic."""

from __future__ import annotations

import time
from typing import Any

from cache_proxy.store.codec import StoredEntry
from cache_proxy.store.redis_keys import TenantKeys

# KEYS: entry, lru, exp, log, epoch, spaces
# ARGV: expected epoch, meta, vec, model, now_ms, expires_ms (0: none), max_entries,
#       log_max_len, space, exact, entry_prefix
# -> {1, last event id} | {0, ""} when an invalidation came first
PUT = """
local epoch = tonumber(redis.call('GET', KEYS[5]) or '0')
if epoch ~= tonumber(ARGV[1]) then return {0, ''} end
redis.call('HSET', KEYS[1], 'meta', ARGV[2], 'vec', ARGV[3], 'model', ARGV[4])
if tonumber(ARGV[6]) > 0 then
  redis.call('PEXPIREAT', KEYS[1], ARGV[6])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[10])
else
  redis.call('PERSIST', KEYS[1])
  redis.call('ZREM', KEYS[3], ARGV[10])
end
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[10])
redis.call('SADD', KEYS[6], ARGV[9])
local last = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
  'op', 'put', 'space', ARGV[9], 'exact', ARGV[10])
local over = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[7])
if over > 0 then
  local doomed = redis.call('ZPOPMIN', KEYS[2], over)
  for i = 1, #doomed, 2 do
    redis.call('UNLINK', ARGV[11] .. doomed[i])
    redis.call('ZREM', KEYS[3], doomed[i])
    last = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[8], '*',
      'op', 'del', 'space', ARGV[9], 'exact', doomed[i])
  end
end
return {1, last}
"""

# KEYS: entry, lru, exp, log   ARGV: exact, space, log_max_len
# -> {removed, event id ('' when there was nothing to remove)}
REMOVE = """
local removed = redis.call('UNLINK', KEYS[1])
local listed = redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if removed + listed == 0 then return {0, ''} end
local id = redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[3], '*',
  'op', 'del', 'space', ARGV[2], 'exact', ARGV[1])
return {removed, id}
"""

# Every space of the tenant: old spaces are invalidated too.
# KEYS: spaces, epoch, log   ARGV: tenant base, model ('' = all), log_max_len
# -> {removed, event id, new epoch}
INVALIDATE = """
local removed = 0
for _, space in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local base = ARGV[1] .. 's:' .. space .. ':'
  for _, exact in ipairs(redis.call('ZRANGE', base .. 'lru', 0, -1)) do
    local key = base .. 'e:' .. exact
    if ARGV[2] == '' or redis.call('HGET', key, 'model') == ARGV[2] then
      removed = removed + redis.call('UNLINK', key)
      redis.call('ZREM', base .. 'lru', exact)
      redis.call('ZREM', base .. 'exp', exact)
    end
  end
end
local epoch = redis.call('INCR', KEYS[2])
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*',
  'op', 'inv', 'model', ARGV[2], 'epoch', epoch)
return {removed, id, epoch}
"""

# Drops expired keys from the sorted sets of every space (Redis expires the hashes itself).
# KEYS: spaces   ARGV: tenant base, now_ms, limit   -> members dropped
SWEEP = """
local dropped = 0
for _, space in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local base = ARGV[1] .. 's:' .. space .. ':'
  local due = redis.call('ZRANGEBYSCORE', base .. 'exp', '-inf', ARGV[2], 'LIMIT', 0, ARGV[3])
  for _, exact in ipairs(due) do
    redis.call('ZREM', base .. 'lru', exact)
    redis.call('ZREM', base .. 'exp', exact)
  end
  dropped = dropped + #due
  if redis.call('EXISTS', base .. 'lru') == 0 then redis.call('SREM', KEYS[1], space) end
end
return dropped
"""

# KEYS: lease   ARGV: holder   -> 1 when released
RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

# KEYS: lease   ARGV: holder, lease_ms   -> 1 when still held
RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""


def put_call(
    keys: TenantKeys, entry: StoredEntry, max_entries: int, log_max_len: int, generation: int
) -> tuple[list[str], list[Any]]:
    """PUT's KEYS and ARGV for one entry (the backend's store, and the bench's bulk load)."""
    fields = entry.to_fields()
    expires_ms = 0 if entry.expires_at is None else int(entry.expires_at * 1000)
    args = [
        generation,
        fields["meta"],
        fields["vec"],
        entry.answer.model,
        int(time.time() * 1000),
        expires_ms,
        max_entries,
        log_max_len,
        keys.space,
        entry.exact,
        keys.entry_prefix,
    ]
    script_keys = [keys.entry(entry.exact), keys.lru, keys.expiries, keys.log, keys.epoch]
    return [*script_keys, keys.spaces], args
