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
local cur = redis.call('GET', KEYS[1]) or '-1'
if cur ~= ARGV[1] then return {0, cur} end
local i, argc = 3, #ARGV
while i <= argc do
  local n = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + n))
  i = i + n + 1
end
redis.call('SET', KEYS[1], ARGV[2])
return {1, ARGV[2]}
