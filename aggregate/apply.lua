-- Applies one pre-aggregated batch of one sg.events partition atomically,
-- together with the offsets that make it exactly-once, and returns the
-- snapshots of the rolling windows the watermark completed and the KPI
-- windows it closed. Every key carries the partition's hash tag (ARGV[1]),
-- so the script touches one Redis Cluster slot. Layout: docs/redis-layout.md.
--
-- ARGV: prefix ("sg:{pN}:"), next_offset, watermark (ms or "-inf"),
--   max_event_time, ttl_s, bucket_ms, snapshot_ms, kpi_ms, kpi_name,
--   tz_ms, freq_cap, click_ttl_s, max_sources, max_scopes,
--   nwin, {name, length_ms (0 = today)} * nwin,
--   nsrc, {src "topic/partition", offset, max_event_time} * nsrc,
--   nent, {scope, bucket_ms, NF counters,
--          ndev, device * ndev, nip, ip * nip, nimp, device * nimp,
--          ncip, ip * ncip, ncdev, device * ncdev} * nent,
--   nops, {"c", click_id, time | "v", click_id, time, entry, entry} * nops
-- An entry's lists: the devices and IPs of its events (unique counts), the
-- devices of its impressions (frequency cap), and the IPs and devices of
-- its clicks (clicks per source; channel entries only). The ops are the
-- batch's clicks and its conversions that name a click, in stream order;
-- a conversion's entries are its channel and campaign entries (1-based).
--
-- Returns {applied, nsnap, {scope, window, start, end, NF counters,
--          unique_devices, unique_ips, ntop, {source, clicks} * ntop} * nsnap,
--          nfinal, {member, scope, window, start, end, NF counters,
--          unique_devices, unique_ips, 0} * nfinal, overflow, more}
-- overflow: the entries this call mapped to an _other scope because the
-- partition already had max_scopes scopes. more: snapshots are left for
-- the next call (the budget of one call was spent).
-- applied is 0 when this batch was applied before (a retry after a lost
-- reply, a re-delivery, or an idle tick with no entries): nothing is added.
local p = ARGV[1]
local next_off = tonumber(ARGV[2])
local wm = ARGV[3]
local max_t = tonumber(ARGV[4])
local ttl = tonumber(ARGV[5])
local bucket_ms = tonumber(ARGV[6])
local snap_ms = tonumber(ARGV[7])
local kpi_ms = tonumber(ARGV[8])
local kpi_name = ARGV[9]
local tz_ms = tonumber(ARGV[10])
local freq_cap = tonumber(ARGV[11])
local click_ttl = tonumber(ARGV[12])
local max_sources = tonumber(ARGV[13])
local max_scopes = tonumber(ARGV[14])
local DAY, HOUR, MINUTE = 86400000, 3600000, 60000

-- The counters of a bucket hash, in the order of aggregate.c's entry_t.
local fields = {'impressions', 'clicks', 'conversions', 'spend_micros',
                'revenue_micros', 'invalid_clicks', 'invalid_impressions',
                'invalid_spend_micros', 'ivt_bot_ua', 'ivt_no_ua', 'ivt_dc_ip',
                'ivt_dup_click', 'freq_cap_impressions', 'ctc_lt_10s',
                'ctc_lt_1m', 'ctc_lt_1h', 'ctc_ge_1h', 'conversions_no_click',
                'source_clicks_untracked'}
local NF = #fields
local F_FREQ, F_CTC, F_NOCLICK, F_UNTRACKED = 13, 14, 18, 19

local function fmt(n) return string.format('%d', n) end
local function floor_to(t, w) return t - (t % w) end

-- Coarser levels of the unique-count and source keys: a long window reads
-- a few minute or hour keys instead of hundreds of bucket keys.
local levels = {{tag = '', ms = bucket_ms}}
if MINUTE > bucket_ms and MINUTE % bucket_ms == 0 then
  levels[#levels + 1] = {tag = 'm', ms = MINUTE}
end
if HOUR > bucket_ms and HOUR % bucket_ms == 0 then
  levels[#levels + 1] = {tag = 'h', ms = HOUR}
end

-- Runs cmd key a1 .. an over ARGV-like list items[from..to], in chunks
-- (unpack() is bounded by the Lua C stack).
local function chunked(cmd, key, items, from, to)
  local j = from
  while j <= to do
    local last = math.min(j + 999, to)
    redis.call(cmd, key, unpack(items, j, last))
    j = last + 1
  end
end

local i = 15
local nwin = tonumber(ARGV[i]); i = i + 1
local wins = {}
for _ = 1, nwin do
  wins[#wins + 1] = {name = ARGV[i], len = tonumber(ARGV[i + 1])}
  i = i + 2
end

-- [start, end) of a window ending at e.
local function win_start(w, e)
  if w.len > 0 then return e - w.len end
  local last = e - 1
  return last - ((last + tz_ms) % DAY)
end

local cur = tonumber(redis.call('GET', p .. 'off') or '-1')
local fresh = cur < next_off

local touched, order = {}, {}
local overflow = 0

-- Adds n (NF counters) to the running window sums of scope whose range
-- already covers bucket: a late event within the lateness.
local wcache = {}
local function add_to_windows(scope, bucket, n)
  for _, w in ipairs(wins) do
    local wkey = p .. 'w:' .. scope .. ':' .. w.name
    local r = wcache[wkey]
    if not r then
      local h = redis.call('HMGET', wkey, 's', 'e')
      r = {tonumber(h[1]), tonumber(h[2])}
      wcache[wkey] = r
    end
    if r[1] and bucket >= r[1] and bucket < r[2] then
      for f = 1, NF do
        if n[f] ~= 0 then redis.call('HINCRBY', wkey, fields[f], n[f]) end
      end
    end
  end
end

-- Adds counts {member = n} to the sorted set key, keeps its cap heaviest
-- members, and returns the clicks of the members it dropped.
local function zadd_counts(key, counts)
  -- ZINCRBY per distinct source: O(log n) each, where a union with a
  -- scratch set would cost the whole set every batch.
  local any = false
  for m, n in pairs(counts) do
    redis.call('ZINCRBY', key, n, m)
    any = true
  end
  if not any then return 0 end
  redis.call('EXPIRE', key, ttl)
  local dropped = 0
  local over = redis.call('ZCARD', key) - max_sources
  if over > 0 then
    local gone = redis.call('ZPOPMIN', key, over)
    for k = 2, #gone, 2 do dropped = dropped + tonumber(gone[k]) end
  end
  return dropped
end

if fresh then
  local nsrc = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nsrc do
    redis.call('HSET', p .. 'src', ARGV[i], ARGV[i + 1])
    redis.call('HSET', p .. 'srct', ARGV[i], ARGV[i + 2])
    i = i + 3
  end

  -- Parse the entries; their lists stay in ARGV as [first, last] ranges.
  local ents = {}
  local nent = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nent do
    local e = {scope = ARGV[i], bstr = ARGV[i + 1]}
    e.bucket = tonumber(e.bstr)
    i = i + 2
    e.n = {}
    for f = 1, NF do e.n[f] = tonumber(ARGV[i]); i = i + 1 end
    e.lists = {}
    for l = 1, 5 do
      local cnt = tonumber(ARGV[i]); i = i + 1
      e.lists[l] = {i, i + cnt - 1}
      i = i + cnt
    end
    ents[#ents + 1] = e
  end

  -- Bounded scopes: past max_scopes, a new channel counts as "_other" (its
  -- campaigns as "_other|_other") and a new campaign of a known channel as
  -- "<channel>|_other". The _other scopes are always admitted: at most one
  -- per channel, plus "_other|" and "_other|_other".
  local nscopes = redis.call('SCARD', p .. 'scopes')
  local known, mapped = {}, {}
  local function admit(scope)
    if known[scope] == nil then
      known[scope] = redis.call('SISMEMBER', p .. 'scopes', scope) == 1
    end
    if known[scope] then return true end
    if nscopes < max_scopes or scope == '_other|' or
       string.sub(scope, -7) == '|_other' then
      redis.call('SADD', p .. 'scopes', scope)
      known[scope] = true
      nscopes = nscopes + 1
      return true
    end
    return false
  end
  for _, e in ipairs(ents) do
    if string.sub(e.scope, -1) == '|' then
      if not admit(e.scope) then
        mapped[e.scope] = '_other|'
      end
    end
  end
  for _, e in ipairs(ents) do
    local bar = string.find(e.scope, '|', 1, true)
    local ch = string.sub(e.scope, 1, bar)
    if string.sub(e.scope, -1) == '|' then
      if mapped[e.scope] then
        e.scope = mapped[e.scope]
        overflow = overflow + 1
      end
    elseif mapped[ch] then
      e.scope = '_other|_other'
      overflow = overflow + 1
    elseif not admit(e.scope) then
      e.scope = ch .. '_other'
      overflow = overflow + 1
    end
    admit(e.scope)
  end

  -- Click-to-conversion: clicks earlier in the stream, from this batch
  -- (in order) or from the hourly click hashes of earlier batches.
  local nops = tonumber(ARGV[i]); i = i + 1
  local batch_clicks, clicks_by_hour, pending = {}, {}, {}
  local tmin, tmax
  local function ctc(e1, e2, dt)
    local f = F_CTC + 3
    if dt < 10000 then f = F_CTC
    elseif dt < MINUTE then f = F_CTC + 1
    elseif dt < HOUR then f = F_CTC + 2 end
    ents[e1].n[f] = ents[e1].n[f] + 1
    ents[e2].n[f] = ents[e2].n[f] + 1
  end
  for _ = 1, nops do
    if ARGV[i] == 'c' then
      local id, t = ARGV[i + 1], tonumber(ARGV[i + 2])
      batch_clicks[id] = t
      local h = fmt(floor_to(t, HOUR))
      local l = clicks_by_hour[h]
      if not l then l = {}; clicks_by_hour[h] = l end
      l[#l + 1] = id
      l[#l + 1] = ARGV[i + 2]
      i = i + 3
    else
      local id, t = ARGV[i + 1], tonumber(ARGV[i + 2])
      local e1, e2 = tonumber(ARGV[i + 3]), tonumber(ARGV[i + 4])
      local ct = batch_clicks[id]
      if ct then
        ctc(e1, e2, t - ct)
      else
        pending[#pending + 1] = {id = id, t = t, e1 = e1, e2 = e2}
        if not tmin or t < tmin then tmin = t end
        if not tmax or t > tmax then tmax = t end
      end
      i = i + 5
    end
  end
  if #pending > 0 then
    local ids, found = {}, {}
    for k, c in ipairs(pending) do ids[k] = c.id end
    local h = floor_to(tmin - click_ttl * 1000, HOUR)
    while h <= tmax do
      local got = redis.call('HMGET', p .. 'ck:' .. fmt(h), unpack(ids))
      for k = 1, #ids do
        if got[k] then found[k] = tonumber(got[k]) end
      end
      h = h + HOUR
    end
    for k, c in ipairs(pending) do
      if found[k] then
        ctc(c.e1, c.e2, c.t - found[k])
      else
        ents[c.e1].n[F_NOCLICK] = ents[c.e1].n[F_NOCLICK] + 1
        ents[c.e2].n[F_NOCLICK] = ents[c.e2].n[F_NOCLICK] + 1
      end
    end
  end
  for h, l in pairs(clicks_by_hour) do
    local key = p .. 'ck:' .. h
    chunked('HSET', key, l, 1, #l)
    redis.call('EXPIRE', key, click_ttl + 3600)
  end

  for _, e in ipairs(ents) do
    local scope, bstr, bucket = e.scope, e.bstr, e.bucket
    local bar = string.find(scope, '|', 1, true)
    local channel_scope = bar == #scope

    -- Frequency cap: impressions per device and day in this scope.
    local r = e.lists[3]
    if freq_cap > 0 and r[2] >= r[1] then
      local day = floor_to(bucket + tz_ms, DAY)
      local key = p .. 'fc:' .. scope .. ':' .. fmt(day)
      local cnt, devs = {}, {}
      for k = r[1], r[2] do
        local d = ARGV[k]
        if not cnt[d] then devs[#devs + 1] = d; cnt[d] = 0 end
        cnt[d] = cnt[d] + 1
      end
      local old, set = {}, {}
      local j = 1
      while j <= #devs do
        local last = math.min(j + 999, #devs)
        local got = redis.call('HMGET', key, unpack(devs, j, last))
        for k = j, last do old[k] = tonumber(got[k - j + 1]) or 0 end
        j = last + 1
      end
      local over = 0
      for k, d in ipairs(devs) do
        local now = old[k] + cnt[d]
        over = over + math.max(0, now - freq_cap) -
               math.max(0, old[k] - freq_cap)
        set[#set + 1] = d
        set[#set + 1] = now
      end
      chunked('HSET', key, set, 1, #set)
      redis.call('EXPIRE', key, math.floor((DAY * 2) / 1000))
      e.n[F_FREQ] = e.n[F_FREQ] + over
    end

    -- Clicks per source, at every level; what a cap drops is counted.
    if channel_scope then
      local counts = {}
      local rip, rdev = e.lists[4], e.lists[5]
      for k = rip[1], rip[2] do
        local s = 'ip:' .. ARGV[k]
        counts[s] = (counts[s] or 0) + 1
      end
      for k = rdev[1], rdev[2] do
        local s = 'device:' .. ARGV[k]
        counts[s] = (counts[s] or 0) + 1
      end
      if next(counts) then
        for li, lv in ipairs(levels) do
          local key = p .. 'sc' .. lv.tag .. ':' .. scope .. ':' ..
                      fmt(floor_to(bucket, lv.ms))
          local dropped = zadd_counts(key, counts)
          if li == 1 then e.n[F_UNTRACKED] = e.n[F_UNTRACKED] + dropped end
        end
      end
    end

    local bkey = p .. 'b:' .. scope .. ':' .. bstr
    for f = 1, NF do
      if e.n[f] ~= 0 then redis.call('HINCRBY', bkey, fields[f], e.n[f]) end
    end
    redis.call('EXPIRE', bkey, ttl)
    add_to_windows(scope, bucket, e.n)

    -- Unique devices (u) and IPs (i), at every level.
    for l, kind in ipairs({'u', 'i'}) do
      r = e.lists[l]
      if r[2] >= r[1] then
        for _, lv in ipairs(levels) do
          local key = p .. kind .. lv.tag .. ':' .. scope .. ':' ..
                      fmt(floor_to(bucket, lv.ms))
          chunked('PFADD', key, ARGV, r[1], r[2])
          redis.call('EXPIRE', key, ttl)
        end
      end
    end

    redis.call('ZADD', p .. 'bi:' .. scope, bucket, bstr)
    local ws = floor_to(bucket, kpi_ms)
    redis.call('ZADD', p .. 'open', ws + kpi_ms, scope .. '|' .. fmt(ws))
    if not touched[scope] then
      touched[scope] = true
      order[#order + 1] = scope
    end
  end

  for _, scope in ipairs(order) do
    local bi = p .. 'bi:' .. scope
    redis.call('ZREMRANGEBYSCORE', bi, '-inf', '(' .. fmt(max_t - ttl * 1000))
    redis.call('EXPIRE', bi, ttl)
  end
  redis.call('SET', p .. 'off', next_off)
  local old_t = tonumber(redis.call('GET', p .. 'maxt') or '0')
  if max_t > old_t then redis.call('SET', p .. 'maxt', fmt(max_t)) end
end

-- The highest watermark so far (aggregate.c keeps it from going back).
if wm ~= '-inf' then
  local old_wm = tonumber(redis.call('GET', p .. 'wm') or '-1e300')
  if tonumber(wm) > old_wm then redis.call('SET', p .. 'wm', wm) end
end

-- Adds sign * the bucket counters of scope starting in [from, to) to tot.
local function add_buckets(scope, from, to, tot, sign)
  if to <= from then return end
  local bs = redis.call('ZRANGEBYSCORE', p .. 'bi:' .. scope, fmt(from),
                        '(' .. fmt(to))
  for _, b in ipairs(bs) do
    local h = redis.call('HMGET', p .. 'b:' .. scope .. ':' .. b,
                         unpack(fields))
    for f = 1, NF do tot[f] = tot[f] + sign * (tonumber(h[f]) or 0) end
  end
end

-- The keys of kind covering [from, to) at the coarsest level that needs
-- at most 64 of them (bucket-level keys for short windows).
local function level_keys(prefix, scope, from, to)
  local lv = levels[1]
  for _, l in ipairs(levels) do
    lv = l
    if (to - from) / l.ms <= 64 then break end
  end
  local keys = {}
  local t = floor_to(from, lv.ms)
  while t < to do
    keys[#keys + 1] = p .. prefix .. lv.tag .. ':' .. scope .. ':' .. fmt(t)
    t = t + lv.ms
  end
  return keys
end

local function uniques(scope, from, to, out)
  for _, kind in ipairs({'u', 'i'}) do
    local keys = level_keys(kind, scope, from, to)
    out[#out + 1] = #keys > 0 and redis.call('PFCOUNT', unpack(keys)) or 0
  end
end

-- The heaviest sources of a channel scope over [from, to).
local function top_sources(scope, from, to, out)
  local keys = level_keys('sc', scope, from, to)
  local tmp = p .. 'tmp'
  redis.call('ZUNIONSTORE', tmp, #keys, unpack(keys))
  local top = redis.call('ZREVRANGE', tmp, 0, 9, 'WITHSCORES')
  redis.call('DEL', tmp)
  out[#out + 1] = #top / 2
  for k = 1, #top, 2 do
    out[#out + 1] = top[k]
    out[#out + 1] = tonumber(top[k + 1])
  end
end

-- The running sums of a scope's window, moved to [s, e): the buckets that
-- entered are added and those that left subtracted; recomputed from the
-- buckets when the new range does not overlap the old one.
local function window_sums(scope, w, s, e, out)
  local wkey = p .. 'w:' .. scope .. ':' .. w.name
  local h = redis.call('HMGET', wkey, 's', 'e', unpack(fields))
  local s0, e0 = tonumber(h[1]), tonumber(h[2])
  local tot = {}
  if s0 and s >= s0 and s < e0 and e >= e0 then
    for f = 1, NF do tot[f] = tonumber(h[f + 2]) or 0 end
    add_buckets(scope, e0, e, tot, 1)
    add_buckets(scope, s0, s, tot, -1)
  else
    for f = 1, NF do tot[f] = 0 end
    add_buckets(scope, s, e, tot, 1)
  end
  local set = {'s', fmt(s), 'e', fmt(e)}
  for f = 1, NF do
    set[#set + 1] = fields[f]
    set[#set + 1] = fmt(tot[f])
    out[#out + 1] = tot[f]
  end
  redis.call('HSET', wkey, unpack(set))
  redis.call('EXPIRE', wkey, ttl)
end

-- Snapshots for rules cover complete windows only, ending at the watermark
-- (aligned to the snapshot cadence), so every input partition has passed
-- their end. A batch snapshots the scopes it touched; a call without
-- entries (an idle tick, or a batch applied before) every scope of the
-- partition. sg:{pN}:snap keeps the last window end sent per scope, so none
-- is sent twice.
-- Every step of the cadence is snapshotted, also when the watermark jumps
-- several at once (a backlog, a replay): rules see each window once, so
-- that "N consecutive windows" and baselines hold. A scope starts at its
-- first bucket and catches up at most MAX_STEPS steps behind; a call emits
-- at most SNAP_BUDGET snapshots and says so (more = 1), the caller comes
-- back for the rest.
local MAX_STEPS, SNAP_BUDGET = 60, 4000
local out = {fresh and 1 or 0, 0}
local nsnap_at = 2
local more = 0
if wm ~= '-inf' then
  local wm_end = floor_to(tonumber(wm), snap_ms)
  local scopes = order
  if #order == 0 then
    scopes = redis.call('SMEMBERS', p .. 'scopes')
  end
  local nsnap = 0
  for _, scope in ipairs(scopes) do
    local last = tonumber(redis.call('HGET', p .. 'snap', scope) or '0')
    if wm_end > last and nsnap + #wins > SNAP_BUDGET then
      more = 1
    elseif wm_end > last then
      local from = last + snap_ms
      if from < wm_end - (MAX_STEPS - 1) * snap_ms then
        from = wm_end - (MAX_STEPS - 1) * snap_ms
      end
      if last == 0 then
        local first = redis.call('ZRANGE', p .. 'bi:' .. scope, 0, 0)
        if first[1] then
          local fe = floor_to(tonumber(first[1]), snap_ms) + snap_ms
          if fe > from then from = fe end
        end
      end
      local channel_scope = string.sub(scope, -1) == '|'
      local e = from
      while e <= wm_end do
        if nsnap + #wins > SNAP_BUDGET then
          more = 1
          break
        end
        for _, w in ipairs(wins) do
          local st = win_start(w, e)
          out[#out + 1] = scope
          out[#out + 1] = w.name
          out[#out + 1] = st
          out[#out + 1] = e
          window_sums(scope, w, st, e, out)
          uniques(scope, st, e, out)
          if channel_scope then
            top_sources(scope, st, e, out)
          else
            out[#out + 1] = 0
          end
          nsnap = nsnap + 1
        end
        redis.call('HSET', p .. 'snap', scope, fmt(e))
        e = e + snap_ms
      end
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
  local tot = {}
  for f = 1, NF do tot[f] = 0 end
  add_buckets(scope, ws, ws + kpi_ms, tot, 1)
  out[#out + 1] = m
  out[#out + 1] = scope
  out[#out + 1] = kpi_name
  out[#out + 1] = ws
  out[#out + 1] = ws + kpi_ms
  for f = 1, NF do out[#out + 1] = tot[f] end
  uniques(scope, ws, ws + kpi_ms, out)
  out[#out + 1] = 0
end
out[#out + 1] = overflow
out[#out + 1] = more
return out
