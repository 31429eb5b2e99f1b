"""The Lua scripts of :mod:`labruntime.store.tasks` (each runs atomically in Redis).

Every script is PREAMBLE + its body. ``ARGV[1]`` is always the key prefix ``P``; the keys are
built from it (the layout is in store.tasks' docstring), so the scripts need a single Redis
server, not a cluster. ``finalize`` writes a task's final state once and only once.
"""

PREAMBLE = """
local P = ARGV[1]
local function tkey(id) return P .. 'task:' .. id end
local function finalize(id, status, result, err, now, expires)
  local k = tkey(id)
  local cur = redis.call('HGET', k, 'status')
  if cur ~= 'submitted' and cur ~= 'running' then return 0 end
  local sess = redis.call('HGET', k, 'session') or ''
  local wid = redis.call('HGET', k, 'worker')
  redis.call('HSET', k, 'status', status, 'finished', now)
  if result then redis.call('HSET', k, 'result', result) end
  if err then redis.call('HSET', k, 'error', err) end
  if wid then redis.call('SREM', P .. 'worker:' .. wid .. ':running', id) end
  local unfinished = P .. 'tasks:unfinished:' .. sess
  redis.call('SREM', unfinished, id)
  local lock = redis.call('HGET', k, 'lock')
  if lock and redis.call('GET', lock) == id then redis.call('DEL', lock) end
  local done = k .. ':done'
  redis.call('DEL', done)
  redis.call('RPUSH', done, status)
  redis.call('EXPIRE', done, expires)
  local fl = P .. 'tasks:finished:' .. sess
  redis.call('LPUSH', fl, id)
  redis.call('LTRIM', fl, 0, 99)
  redis.call('EXPIRE', fl, expires)
  redis.call('EXPIRE', k, expires)
  if redis.call('SCARD', unfinished) == 0 then
    redis.call('EXPIRE', P .. 'tasks:session:' .. sess, expires)
  end
  return 1
end
local function lock_free(lock)
  local holder = redis.call('GET', lock)
  if not holder then return true end
  if string.sub(holder, 1, 5) == 'sync:' then return false end
  local st = redis.call('HGET', tkey(holder), 'status')
  return st ~= 'submitted' and st ~= 'running'
end
"""

# KEYS: the device leases the task needs (a device task is queued only while every one of
# them is live and open to new tasks: admission and queueing are one atomic step).
# ARGV: P, id, session, pool, lock ('' = none), now, then field/value pairs
# -> 1 queued, 0 the unique lock is held, -1 a device lease is gone or closed
ENQUEUE = """
local id, sess, pool, lock, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
for _, lease in ipairs(KEYS) do
  local cur = redis.call('GET', lease)
  if not cur or cjson.decode(cur)['closed'] then return -1 end
end
if lock ~= '' then
  if not lock_free(lock) then return 0 end
  redis.call('SET', lock, id)
end
local k = tkey(id)
for i = 7, #ARGV, 2 do redis.call('HSET', k, ARGV[i], ARGV[i + 1]) end
redis.call('HSET', k, 'status', 'submitted', 'session', sess, 'pool', pool, 'lock', lock,
           'stopping', '0', 'created', now)
local zs = P .. 'tasks:session:' .. sess
redis.call('ZADD', zs, now, id)
redis.call('PERSIST', zs)
redis.call('SADD', P .. 'tasks:unfinished:' .. sess, id)
redis.call('LPUSH', P .. 'tasks:queue:' .. pool, id)
return 1
"""

# ARGV: P, id, wid, now, lease_ms  -> hash as flat list, or nil when not claimable
CLAIM = """
local id, wid, now, lease = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
redis.call('LREM', P .. 'worker:' .. wid .. ':processing', 1, id)
local k = tkey(id)
if redis.call('HGET', k, 'status') ~= 'submitted' then return false end
redis.call('HSET', k, 'status', 'running', 'worker', wid, 'started', now)
redis.call('SADD', P .. 'worker:' .. wid .. ':running', id)
local lock = redis.call('HGET', k, 'lock')
if lock and lock ~= '' and redis.call('GET', lock) == id then
  redis.call('PEXPIRE', lock, lease)
end
return redis.call('HGETALL', k)
"""

# ARGV: P, id, wid ('' = anyone), status, result, error, data, now, expires
FINISH = """
local id, wid = ARGV[2], ARGV[3]
local k = tkey(id)
if wid ~= '' and redis.call('HGET', k, 'worker') ~= wid then return 0 end
if ARGV[7] ~= '' and redis.call('HGET', k, 'status') == 'running' then
  redis.call('HSET', k, 'data', ARGV[7])
end
local result, err = false, false
if ARGV[5] ~= '' then result = ARGV[5] end
if ARGV[6] ~= '' then err = ARGV[6] end
return finalize(id, ARGV[4], result, err, ARGV[8], tonumber(ARGV[9]))
"""

# ARGV: P, id, now, expires, error-json-if-never-started, cancel ('1': a task not started yet
# is failed now, never run) -> 'finalized' | 'flagged' (not started: it runs with the flag) |
# 'running' | false
STOP = """
local id = ARGV[2]
local k = tkey(id)
local st = redis.call('HGET', k, 'status')
if st == 'submitted' then
  redis.call('HSET', k, 'stopping', '1')
  if ARGV[6] ~= '1' then return 'flagged' end
  finalize(id, 'failed', false, ARGV[5], ARGV[3], tonumber(ARGV[4]))
  return 'finalized'
end
if st == 'running' then
  redis.call('HSET', k, 'stopping', '1')
  local wid = redis.call('HGET', k, 'worker')
  if wid then redis.call('PUBLISH', P .. 'worker:' .. wid .. ':stop', id) end
  return 'running'
end
return false
"""

# ARGV: P, wid, lease_ms, info -> ids of running tasks flagged stopping
HEARTBEAT = """
local wid, lease = ARGV[2], tonumber(ARGV[3])
redis.call('SET', P .. 'worker:' .. wid, ARGV[4], 'PX', lease)
redis.call('SADD', P .. 'workers', wid)
redis.call('DEL', P .. 'worker:' .. wid .. ':lapsed')
local stopping = {}
for _, id in ipairs(redis.call('SMEMBERS', P .. 'worker:' .. wid .. ':running')) do
  local k = tkey(id)
  local lock = redis.call('HGET', k, 'lock')
  if lock and lock ~= '' and redis.call('GET', lock) == id then
    redis.call('PEXPIRE', lock, lease)
  end
  if redis.call('HGET', k, 'stopping') == '1' then table.insert(stopping, id) end
end
return stopping
"""

# A worker's beat (HEARTBEAT) that also reads what its reaper pass needs, in one call.
# ARGV: P, wid, lease-ms, info-json. Returns JSON {stopping: [ids], processing: [ids this
# worker took and has not claimed], lapsed: [registered workers whose lease is gone]}.
BEAT = (
    "local function heartbeat()\n"
    + HEARTBEAT
    + """end
local stopping = heartbeat()
local lapsed = {}
for _, w in ipairs(redis.call('SMEMBERS', P .. 'workers')) do
  if redis.call('EXISTS', P .. 'worker:' .. w) == 0 then table.insert(lapsed, w) end
end
local processing = redis.call('LRANGE', P .. 'worker:' .. ARGV[2] .. ':processing', 0, -1)
return cjson.encode({stopping = stopping, processing = processing, lapsed = lapsed})
"""
)

# The registered workers whose lease is gone. ARGV: P. Returns {number of registered
# workers, milliseconds until the first live lease lapses (-1: none), lapsed id...}.
LAPSED = """
local out = {0, -1}
for _, w in ipairs(redis.call('SMEMBERS', P .. 'workers')) do
  out[1] = out[1] + 1
  local ttl = redis.call('PTTL', P .. 'worker:' .. w)
  if ttl == -2 then
    table.insert(out, w)
  elseif ttl >= 0 and (out[2] < 0 or ttl < out[2]) then
    out[2] = ttl
  end
end
return out
"""

# ARGV: P, wid, now, expires, error-json, force ('1': even if the lease is alive), grace_ms,
# gone ('1': the caller saw the worker's process is gone). -1: not reaped (alive, or its lease
# lapsed less than grace_ms ago as seen by reapers: Redis time, counted from the first reaper
# that found it lapsed, so time Redis was unreachable does not count).
REAP = """
local wid = ARGV[2]
local wkey = P .. 'worker:' .. wid
if ARGV[6] ~= '1' then
  if redis.call('EXISTS', wkey) == 1 then return -1 end
  local grace = tonumber(ARGV[7])
  if ARGV[8] ~= '1' and grace > 0 then
    local t = redis.call('TIME')
    local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    local seen = tonumber(redis.call('GET', wkey .. ':lapsed'))
    if not seen then
      redis.call('SET', wkey .. ':lapsed', ms, 'PX', grace * 10 + 60000)
      return -1
    end
    if ms - seen < grace then return -1 end
  end
end
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', wkey .. ':running')) do
  local k = tkey(id)
  if redis.call('HGET', k, 'status') == 'running' and redis.call('HGET', k, 'worker') == wid then
    n = n + finalize(id, 'failed', false, ARGV[5], ARGV[3], tonumber(ARGV[4]))
  end
end
for _, id in ipairs(redis.call('LRANGE', wkey .. ':processing', 0, -1)) do
  local k = tkey(id)
  if redis.call('HGET', k, 'status') == 'submitted' then
    local pool = redis.call('HGET', k, 'pool') or 'default'
    redis.call('RPUSH', P .. 'tasks:queue:' .. pool, id)
  end
end
redis.call('DEL', wkey, wkey .. ':running', wkey .. ':processing', wkey .. ':lapsed')
redis.call('SREM', P .. 'workers', wid)
return n
"""

# ARGV: P, sid, now, expires, error-json -> number of tasks failed
FAIL_UNFINISHED = """
local n = 0
for _, id in ipairs(redis.call('SMEMBERS', P .. 'tasks:unfinished:' .. ARGV[2])) do
  n = n + finalize(id, 'failed', false, ARGV[5], ARGV[3], tonumber(ARGV[4]))
end
return n
"""

# ARGV: P, lock, holder, px -> 1 taken, 0 held by someone else
LOCK = """
if not lock_free(ARGV[2]) then return 0 end
redis.call('SET', ARGV[2], ARGV[3], 'PX', tonumber(ARGV[4]))
return 1
"""

# ARGV: P, lock, holder, px -> 1 renewed / released, 0 not the holder
LOCK_RENEW = """
if redis.call('GET', ARGV[2]) ~= ARGV[3] then return 0 end
if ARGV[4] == '0' then redis.call('DEL', ARGV[2]) else redis.call('PEXPIRE', ARGV[2], ARGV[4]) end
return 1
"""
