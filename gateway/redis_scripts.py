"""Lua sources of the Redis backend's steps that must be atomic (and idempotent when retried).

``RedisStore.start`` registers them with ``register_script``: that runs ``EVALSHA`` and reloads a script
after a Redis restart emptied the script cache.
"""

from __future__ import annotations

ENQUEUE = """
-- KEYS: job hash, waiting zset, the order's seq, user pending set, user recent list, user rate zset,
--       user waiting zset, round counters hash, wake-up list
-- ARGV: job_id, record json, max_depth (0 = no cap), recent_max, max_pending (0 = no cap),
--       rate limit ('' = no rate), rate window s, rate now ('' = the server's clock), rate member,
--       order ('fair' | 'fifo'), the user's weight (jobs per round)
-- A retry after a lost reply finds the job already there and only reports its position.
-- Every admission check is here, atomically (checked before the call, many processes could all pass),
-- in this order: queue cap {-1, depth}, pending cap {-2, pending}, rate {-3, retry_after_s as a string}.
-- The rate is a sliding log on a sorted set; only an admitted job counts, so a refused flood spends none.
-- The waiting score is round * SPAN + the job's arrival in its round (gateway/fair.py; fifo: the seq),
-- so ZRANK is the position under round-robin. No stream entry yet: TAKE adds it for the taker.
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
if max_pending > 0 and redis.call('SCARD', KEYS[4]) >= max_pending then
  return {-2, redis.call('SCARD', KEYS[4])}
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
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - window)
  if redis.call('ZCARD', KEYS[6]) >= limit then
    local oldest = redis.call('ZRANGE', KEYS[6], 0, 0, 'WITHSCORES')
    return {-3, tostring(tonumber(oldest[2]) + window - now)}
  end
  redis.call('ZADD', KEYS[6], now, ARGV[9])
  redis.call('PEXPIRE', KEYS[6], math.ceil(window * 1000))
end
local score = redis.call('INCR', KEYS[3])
if ARGV[10] == 'fair' then
  local span = 16777216
  local current = 0
  local top = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
  if top[2] then
    current = math.floor(tonumber(top[2]) / span)
  end
  local rnd = current
  local newest = redis.call('ZREVRANGE', KEYS[7], 0, 0, 'WITHSCORES')
  if newest[2] then
    local r = math.floor(tonumber(newest[2]) / span)
    if r >= current then
      rnd = r
      local lo, hi = string.format('%.0f', r * span), string.format('%.0f', (r + 1) * span - 1)
      if redis.call('ZCOUNT', KEYS[7], lo, hi) >= tonumber(ARGV[11]) then
        rnd = r + 1
      end
    end
  end
  score = rnd * span + redis.call('HINCRBY', KEYS[8], string.format('%.0f', rnd), 1)
end
score = string.format('%.0f', score)
redis.call('ZADD', KEYS[2], score, ARGV[1])
redis.call('ZADD', KEYS[7], score, ARGV[1])
redis.call('HSET', KEYS[1], 'rec', ARGV[2], 'uwait', KEYS[7])
redis.call('LPUSH', KEYS[9], '1')
redis.call('LTRIM', KEYS[9], 0, 63)
redis.call('SADD', KEYS[4], ARGV[1])
redis.call('LREM', KEYS[5], 0, ARGV[1])
redis.call('LPUSH', KEYS[5], ARGV[1])
redis.call('LTRIM', KEYS[5], 0, tonumber(ARGV[4]) - 1)
return {redis.call('ZRANK', KEYS[2], ARGV[1]) + 1, depth + 1}
"""

TAKE = """
-- KEYS: waiting zset, queue stream, round counters hash, the consumer's last take
-- ARGV: consumer, job hash key prefix, this take's nonce (the same when the call is retried)
-- The first waiting job by (round, arrival) leaves the queue and becomes a stream entry read by this
-- consumer at once: its lease is the entry in the group's pending list, renewed, released and taken
-- over (XAUTOCLAIM) as before. Entries an older version added at enqueue, still unread, are dropped
-- first (their jobs are in the waiting zset too), so the entry read is the one added here. A retry
-- after a lost reply (same nonce) hands over the job the lost reply carried.
local last = redis.call('HMGET', KEYS[4], 'nonce', 'job', 'entry')
if last[1] == ARGV[3] then
  local rec = redis.call('HGET', ARGV[2] .. last[2], 'rec')
  if rec then
    return {last[2], last[3], rec}
  end
end
local old = redis.call('XREADGROUP', 'GROUP', 'workers', ARGV[1], 'COUNT', 100, 'STREAMS', KEYS[2], '>')
if old then
  for _, e in ipairs(old[1][2]) do
    redis.call('XACK', KEYS[2], 'workers', e[1])
    redis.call('XDEL', KEYS[2], e[1])
  end
end
local span = 16777216
while true do
  local top = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if not top[1] then
    redis.call('DEL', KEYS[3])
    return false
  end
  local job_id, job = top[1], ARGV[2] .. top[1]
  redis.call('ZREM', KEYS[1], job_id)
  local uw = redis.call('HGET', job, 'uwait')
  if uw then
    redis.call('ZREM', uw, job_id)
  end
  local rnd = math.floor(tonumber(top[2]) / span)
  local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if not nxt[2] then
    redis.call('DEL', KEYS[3])
  elseif math.floor(tonumber(nxt[2]) / span) > rnd then
    redis.call('HDEL', KEYS[3], string.format('%.0f', rnd))
  end
  local rec = redis.call('HGET', job, 'rec')
  if rec then
    local entry = redis.call('XADD', KEYS[2], '*', 'job', job_id)
    redis.call('XREADGROUP', 'GROUP', 'workers', ARGV[1], 'COUNT', 1, 'STREAMS', KEYS[2], '>')
    redis.call('HSET', job, 'entry', entry)
    redis.call('HSET', KEYS[4], 'nonce', ARGV[3], 'job', job_id, 'entry', entry)
    redis.call('EXPIRE', KEYS[4], 86400)
    return {job_id, entry, rec}
  end
end
"""

REMOVE_QUEUED = """
-- KEYS: waiting zset, job hash ; ARGV: job_id. Out of the queue and of its user's waiting jobs.
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
local uw = redis.call('HGET', KEYS[2], 'uwait')
if uw then
  redis.call('ZREM', uw, ARGV[1])
end
return removed
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
local uw = redis.call('HGET', KEYS[1], 'uwait')
if uw then
  redis.call('ZREM', uw, ARGV[1])
end
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
