-- The checkpoint of one sg.events partition after a batch: what the batch
-- changed in aggregate's in-memory state (docs/redis-layout.md), applied
-- atomically with the offset that makes it exactly once, and fenced: it is
-- applied only if the partition still stands where the writer loaded or
-- last wrote it. A zombie owner after a rebalance, a retry of a batch cut
-- differently, and a Redis that lost writes (restart, failover) find
-- another offset and change nothing.
--
-- KEYS[1]: sg:{pN}:off (every other key shares its hash tag).
-- ARGV[1]: the offset this batch starts at ("-1": none stored yet);
-- ARGV[2]: the offset after it; then the commands, each as
-- argc, command, arguments. Every command is an absolute write (SET,
-- HSET, ZADD, ZREM, SADD, APPEND of a log, expiries): no counter is
-- incremented here, so a command cannot fail half way on a value.
-- Returns {1, next} when applied, {0, the stored offset} when not.
--
-- Two commands of its own keep Redis within the bound of
-- docs/redis-layout.md whatever ids and names the events carry:
-- SGTRIM bi cut prefix scope kind level_ms ...: the buckets of a scope's
-- index bi older than cut go, and with them each kind's key of the bucket,
-- minute or hour holding them (cut is a multiple of every level);
-- SGLOG key data cap record ttl index score cut: appends data to a log,
-- the whole records that fit under cap bytes (cap < 0: no cap), lists it
-- in index by score and deletes the logs listed there older than cut.
local function trim(a, b)
  local bi, cut, pfx, scope = ARGV[a], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3]
  local old = redis.call('ZRANGEBYSCORE', bi, '-inf', '(' .. cut)
  if #old == 0 then return end
  for _, m in ipairs(old) do
    local t = tonumber(m)
    for j = a + 4, b, 2 do
      local lv = tonumber(ARGV[j + 1])
      redis.call('DEL', pfx .. ARGV[j] .. ':' .. scope .. ':' ..
                 string.format('%.0f', t - t % lv))
    end
  end
  redis.call('ZREMRANGEBYSCORE', bi, '-inf', '(' .. cut)
end

local function log(a)
  local key, data, cap = ARGV[a], ARGV[a + 1], tonumber(ARGV[a + 2])
  local rec, idx = tonumber(ARGV[a + 3]), ARGV[a + 5]
  local n = #data
  if cap >= 0 then
    local room = cap - redis.call('STRLEN', key)
    if room < n then n = room > 0 and room - room % rec or 0 end
  end
  if n > 0 then redis.call('APPEND', key, string.sub(data, 1, n)) end
  redis.call('EXPIRE', key, ARGV[a + 4])
  redis.call('ZADD', idx, ARGV[a + 6], key)
  local old = redis.call('ZRANGEBYSCORE', idx, '-inf', '(' .. ARGV[a + 7])
  for _, k in ipairs(old) do redis.call('DEL', k) end
  if #old > 0 then
    redis.call('ZREMRANGEBYSCORE', idx, '-inf', '(' .. ARGV[a + 7])
  end
  redis.call('EXPIRE', idx, ARGV[a + 4])
end

local cur = redis.call('GET', KEYS[1]) or '-1'
if cur ~= ARGV[1] then return {0, cur} end
local i, argc = 3, #ARGV
while i <= argc do
  local n = tonumber(ARGV[i])
  local c = ARGV[i + 1]
  if c == 'SGTRIM' then
    trim(i + 2, i + n)
  elseif c == 'SGLOG' then
    log(i + 2)
  else
    redis.call(unpack(ARGV, i + 1, i + n))
  end
  i = i + n + 1
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
