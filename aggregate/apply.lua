-- Applies one pre-aggregated batch of one sg.events partition atomically,
-- together with the offsets that make it exactly-once, and returns the
-- snapshots of the rolling windows the watermark completed and the KPI
-- windows it closed. Every key carries the partition's hash tag (ARGV[1]),
-- so the script touches one Redis Cluster slot. Layout: docs/redis-layout.md.
--
-- ARGV: prefix ("sg:{pN}:"), next_offset, watermark (ms or "-inf"),
--   max_event_time, ttl_s, bucket_ms, window_ms, kpi_ms,
--   nsrc, {src "topic/partition", offset} * nsrc,
--   nent, {scope, bucket_ms, 8 counters, ndev, device * ndev} * nent
-- Returns {applied, nsnap, {scope, start, end, 9 counters} * nsnap,
--          nfinal, {member, scope, start, end, 9 counters} * nfinal}
-- applied is 0 when this batch was applied before (a retry after a lost
-- reply, a re-delivery, or an idle tick with no entries): nothing is added.
local p = ARGV[1]
local next_off = tonumber(ARGV[2])
local wm = ARGV[3]
local max_t = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local bucket_ms = tonumber(ARGV[6])
local window_ms = tonumber(ARGV[7])
local kpi_ms = tonumber(ARGV[8])

local cur = tonumber(redis.call('GET', p .. 'off') or '-1')
local fresh = cur < next_off

local fields = {'impressions', 'clicks', 'conversions', 'spend_micros',
                'revenue_micros', 'invalid_clicks', 'invalid_impressions',
                'invalid_spend_micros'}
local touched, order = {}, {}
if fresh then
local i = 9
local nsrc = tonumber(ARGV[i]); i = i + 1
for _ = 1, nsrc do
  redis.call('HSET', p .. 'src', ARGV[i], ARGV[i + 1])
  i = i + 2
end

local nent = tonumber(ARGV[i]); i = i + 1
for _ = 1, nent do
  local scope, bstr = ARGV[i], ARGV[i + 1]
  local bucket = tonumber(bstr)
  local bkey = p .. 'b:' .. scope .. ':' .. bstr
  i = i + 2
  for f = 1, 8 do
    local v = tonumber(ARGV[i]); i = i + 1
    if v ~= 0 then redis.call('HINCRBY', bkey, fields[f], v) end
  end
  redis.call('EXPIRE', bkey, ttl)
  local ndev = tonumber(ARGV[i]); i = i + 1
  if ndev > 0 then
    local ukey = p .. 'u:' .. scope .. ':' .. bstr
    -- unpack() is bounded by the Lua C stack: add in chunks.
    local j = i
    while j < i + ndev do
      local last = math.min(j + 999, i + ndev - 1)
      redis.call('PFADD', ukey, unpack(ARGV, j, last))
      j = last + 1
    end
    redis.call('EXPIRE', ukey, ttl)
    i = i + ndev
  end
  redis.call('ZADD', p .. 'bi:' .. scope, bucket, bstr)
  local ws = bucket - (bucket % kpi_ms)
  redis.call('ZADD', p .. 'open', ws + kpi_ms, scope .. '|' .. string.format('%d', ws))
  if not touched[scope] then
    touched[scope] = true
    order[#order + 1] = scope
  end
end

for _, scope in ipairs(order) do
  local bi = p .. 'bi:' .. scope
  redis.call('SADD', p .. 'scopes', scope)
  redis.call('ZREMRANGEBYSCORE', bi, '-inf', '(' .. string.format('%d', max_t - ttl * 1000))
  redis.call('EXPIRE', bi, ttl)
end
redis.call('SET', p .. 'off', next_off)
local old_t = tonumber(redis.call('GET', p .. 'maxt') or '0')
if max_t > old_t then redis.call('SET', p .. 'maxt', string.format('%d', max_t)) end
end

-- Sums of the buckets of a scope starting in [from, to).
local function sums(scope, from, to, out)
  local bs = redis.call('ZRANGEBYSCORE', p .. 'bi:' .. scope,
                        string.format('%d', from), '(' .. string.format('%d', to))
  local tot = {0, 0, 0, 0, 0, 0, 0, 0}
  local ukeys = {}
  for _, b in ipairs(bs) do
    local h = redis.call('HMGET', p .. 'b:' .. scope .. ':' .. b, unpack(fields))
    for f = 1, 8 do tot[f] = tot[f] + (tonumber(h[f]) or 0) end
    ukeys[#ukeys + 1] = p .. 'u:' .. scope .. ':' .. b
  end
  for f = 1, 8 do out[#out + 1] = tot[f] end
  if #ukeys > 0 then
    out[#out + 1] = redis.call('PFCOUNT', unpack(ukeys))
  else
    out[#out + 1] = 0
  end
end

-- Snapshots for rules cover complete windows only: the rolling window
-- that ends at the watermark (bucket-aligned), so every input partition has
-- passed its end. A window still filling would judge clicks whose
-- conversions, read from another topic, have not arrived yet. A batch
-- snapshots the scopes it touched; a call without entries (an idle tick,
-- or a batch applied before) every scope of the partition. sg:{pN}:snap
-- keeps the last window end sent per scope, so none is sent twice.
local out = {fresh and 1 or 0, 0}
local nsnap_at = 2
if wm ~= '-inf' then
  local wm_end = tonumber(wm)
  wm_end = wm_end - (wm_end % bucket_ms)
  local scopes = order
  if #order == 0 then
    scopes = redis.call('SMEMBERS', p .. 'scopes')
  end
  local nsnap = 0
  for _, scope in ipairs(scopes) do
    local last = tonumber(redis.call('HGET', p .. 'snap', scope) or '0')
    if wm_end > last then
      redis.call('HSET', p .. 'snap', scope, string.format('%d', wm_end))
      out[#out + 1] = scope
      out[#out + 1] = wm_end - window_ms
      out[#out + 1] = wm_end
      sums(scope, wm_end - window_ms, wm_end, out)
      nsnap = nsnap + 1
    end
  end
  out[nsnap_at] = nsnap
end

-- At most CLOSE_LIMIT (aggregate.c) per call; the caller comes back for more.
local closed = redis.call('ZRANGEBYSCORE', p .. 'open', '-inf', wm, 'LIMIT', 0, 1000)
out[#out + 1] = #closed
for _, m in ipairs(closed) do
  local sep = string.find(m, '|[^|]*$')
  local scope = string.sub(m, 1, sep - 1)
  local ws = tonumber(string.sub(m, sep + 1))
  out[#out + 1] = m
  out[#out + 1] = scope
  out[#out + 1] = ws
  out[#out + 1] = ws + kpi_ms
  sums(scope, ws, ws + kpi_ms, out)
end
return out
