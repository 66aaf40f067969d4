-- The Redis work of one aggregate/apply.lua entry (a scope's bucket), ARGV[1]
-- times per call, on keys under KEYS[1]: what bench/run.sh runs with
-- redis-benchmark EVALSHA to bound aggregate's Redis side.
local p = KEYS[1]
local n = tonumber(ARGV[1])
for i = 1, n do
  local b = p .. ':b:' .. i
  redis.call('HINCRBY', b, 'impressions', 1)
  redis.call('HINCRBY', b, 'clicks', 1)
  redis.call('HINCRBY', b, 'spend_micros', 2000)
  redis.call('EXPIRE', b, 172800)
  local u = p .. ':u:' .. i
  redis.call('PFADD', u, 'd' .. i)
  redis.call('EXPIRE', u, 172800)
  redis.call('ZADD', p .. ':bi:' .. i, 1000, '1000')
  redis.call('ZADD', p .. ':open', 10000, 's' .. i)
  redis.call('SADD', p .. ':scopes', 's' .. i)
end
return n
