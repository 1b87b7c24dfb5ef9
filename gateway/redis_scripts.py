"""Lua sources of the Redis backend's steps that must be atomic (and idempotent when retried).

``RedisStore.start`` registers them with ``register_script``: that runs ``EVALSHA`` and reloads a script
after a Redis restart emptied the script cache.
"""

from __future__ import annotations

ENQUEUE = """
-- KEYS: job hash, waiting zset, queue stream, seq, user pending set, user recent list, user rate zset
-- ARGV: job_id, record json, max_depth (0 = no cap), recent_max, max_pending (0 = no cap),
--       rate limit ('' = no rate), rate window s, rate now ('' = the server's clock), rate member
-- A retry after a lost reply finds the job already there and only reports its position.
-- Every admission check is here, atomically (checked before the call, many processes could all pass),
-- in this order: queue cap {-1, depth}, pending cap {-2, pending}, rate {-3, retry_after_s as a string}.
-- The rate is a sliding log on a sorted set; only an admitted job counts, so a refused flood spends none.
if redis.call('EXISTS', KEYS[1]) == 1 then
  local rank = redis.call('ZRANK', KEYS[2], ARGV[1])
  if rank then rank = rank + 1 else rank = 0 end
  return {rank, redis.call('ZCARD', KEYS[2])}
end
local depth = redis.call('ZCARD', KEYS[2])
local cap = tonumber(ARGV[3])
if cap > 0 and depth >= cap then
  return {-1, depth}
end
local max_pending = tonumber(ARGV[5])
if max_pending > 0 and redis.call('SCARD', KEYS[5]) >= max_pending then
  return {-2, redis.call('SCARD', KEYS[5])}
end
if ARGV[6] ~= '' then
  local limit, window = tonumber(ARGV[6]), tonumber(ARGV[7])
  local now = tonumber(ARGV[8])
  if now == nil then
    local t = redis.call('TIME')
    now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  end
  if limit <= 0 then
    return {-3, tostring(window)}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', now - window)
  if redis.call('ZCARD', KEYS[7]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[7], 0, 0, 'WITHSCORES')
    return {-3, tostring(tonumber(oldest[2]) + window - now)}
  end
  redis.call('ZADD', KEYS[7], now, ARGV[9])
  redis.call('PEXPIRE', KEYS[7], math.ceil(window * 1000))
end
local seq = redis.call('INCR', KEYS[4])
redis.call('ZADD', KEYS[2], seq, ARGV[1])
local entry = redis.call('XADD', KEYS[3], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'entry', entry)
redis.call('SADD', KEYS[5], ARGV[1])
redis.call('LREM', KEYS[6], 0, ARGV[1])
redis.call('LPUSH', KEYS[6], ARGV[1])
redis.call('LTRIM', KEYS[6], 0, tonumber(ARGV[4]) - 1)
return {redis.call('ZRANK', KEYS[2], ARGV[1]) + 1, depth + 1}
"""

TAKE = """
-- KEYS: waiting zset, job hash, queue stream ; ARGV: job_id, stream entry id
-- After XREADGROUP handed us the entry: ZREM is the arbiter against a cancel of the waiting job. The
-- record comes back in the same round trip. 'taken' makes a retry after a lost reply take it again
-- instead of dropping it; an entry whose job was cancelled (or is gone) is acknowledged here.
local taken = redis.call('ZREM', KEYS[1], ARGV[1]) == 1
if taken then
  redis.call('HSET', KEYS[2], 'taken', ARGV[2])
else
  taken = redis.call('HGET', KEYS[2], 'taken') == ARGV[2]
end
if taken then
  local rec = redis.call('HGET', KEYS[2], 'rec')
  if rec then
    return rec
  end
end
redis.call('XACK', KEYS[3], 'workers', ARGV[2])
redis.call('XDEL', KEYS[3], ARGV[2])
return false
"""

SAVE = """
-- KEYS: job hash ; ARGV: record json. Refuses to overwrite a finished record.
if redis.call('HEXISTS', KEYS[1], 'done') == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'rec', ARGV[1])
return 1
"""

FINISH = """
-- KEYS: job hash, user pending set, waiting zset, platform events stream, this hour's outcome counters
-- ARGV: job_id, record json, event json, ttl_s, events_max, counters ttl_s, counter fields...
if redis.call('HSETNX', KEYS[1], 'done', '1') == 0 then
  return 0
end
redis.call('HSET', KEYS[1], 'rec', ARGV[2])
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[4]))
redis.call('SREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
for i = 7, #ARGV do
  redis.call('HINCRBY', KEYS[5], ARGV[i], 1)
end
redis.call('EXPIRE', KEYS[5], tonumber(ARGV[6]))
redis.call('XADD', KEYS[4], 'MAXLEN', '~', ARGV[5], '*', 'ev', ARGV[3])
return 1
"""

LEASE_VIEW = """
-- KEYS: the platform's open views zset, the job's view lease ; ARGV: job_id, owner, ttl_ms
-- The lease goes to the owner when free, lapsed (PX expired it) or already its own; a closed view has none.
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  return false
end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[2] then
  return holder
end
redis.call('SET', KEYS[2], ARGV[2], 'PX', tonumber(ARGV[3]))
return ARGV[2]
"""

DROP_IDLE_CONSUMERS = """
-- KEYS: an event stream ; ARGV: group, the caller's consumer name, min idle ms
-- Consumers with nothing pending that have not read for the lease: replicas that are gone (one per
-- restart under the default <host>-<pid> name). Checked and deleted atomically: never one that owes.
local dropped = 0
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])) do
  local f = {}
  for i = 1, #c, 2 do
    f[c[i]] = c[i + 1]
  end
  if f['name'] ~= ARGV[2] and tonumber(f['pending']) == 0 and tonumber(f['idle']) > tonumber(ARGV[3]) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], f['name'])
    dropped = dropped + 1
  end
end
return dropped
"""


__all__ = ["DROP_IDLE_CONSUMERS", "ENQUEUE", "FINISH", "LEASE_VIEW", "SAVE", "TAKE"]
