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
--   nent, {scope, bucket_ms, nnz, {field (1..NF), value} * nnz,
--          ndev, nimp, device * ndev, nip, ip * nip,
--          [ncip, ip * ncip, ncdev, device * ncdev]} * nent,
--   nops, {"c", click_id, time | "v", click_id, time, entry, entry} * nops
-- An entry's counters are the non-zero ones of the NF below, as field
-- number and value. Its lists: the devices and IPs of its events (unique
-- counts), the devices of its impressions first (the first nimp: the
-- frequency cap), and, for a channel entry (scope "<channel>|") only, the
-- IPs and devices of its clicks (clicks per source). The ops are the
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
-- Globals read in loops, as locals (a global is a table lookup).
local ARGV, tonumber, ipairs, unpack = ARGV, tonumber, ipairs, unpack
local call = redis.call
local max, min = math.max, math.min
local KINDS = {'u', 'i'}
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
local FC_TTL = '172800' -- s: the frequency-cap hashes live two days

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
-- The text of small counts, made once per call (a number passed to
-- redis.call is formatted as a double).
local ntext = {}
local function itext(n)
  local t = ntext[n]
  if not t then
    t = fmt(n)
    ntext[n] = t
  end
  return t
end
-- Adds by to counter f of entry e; its text is made anew.
-- by > 0 (counts); fs lists the non-zero fields in order.
local function bump(e, f, by)
  local n, fs = e.n, e.fs
  if n[f] == 0 then
    local k = #fs + 1
    while k > 1 and fs[k - 1] > f do
      fs[k] = fs[k - 1]
      k = k - 1
    end
    fs[k] = f
  end
  n[f] = n[f] + by
  e.s[f] = false
end
local function floor_to(t, w) return t - (t % w) end

-- Coarser levels of the unique-count and source keys: a long window reads
-- a few minute or hour keys instead of hundreds of bucket keys.
local all_levels = {{tag = '', ms = bucket_ms}}
if MINUTE > bucket_ms and MINUTE % bucket_ms == 0 then
  all_levels[#all_levels + 1] = {tag = 'm', ms = MINUTE}
end
if HOUR > bucket_ms and HOUR % bucket_ms == 0 then
  all_levels[#all_levels + 1] = {tag = 'h', ms = HOUR}
end

-- Runs cmd key a1 .. an over ARGV-like list items[from..to], in chunks
-- (unpack() is bounded by the Lua C stack).
local function chunked(cmd, key, items, from, to)
  local j = from
  while j <= to do
    local last = min(j + 999, to)
    call(cmd, key, unpack(items, j, last))
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

-- The levels kept: the bucket level (sg-ctl reads it; source_clicks_untracked
-- is counted there) and each level level_keys() picks for a configured
-- window or the KPI window: the first whose keys for the range number at
-- most 64, else the last. "today" spans 1 ms to a day, so it may pick any
-- level whose range starts below a day. Picking from the kept levels gives
-- the same level as picking from all of them: every level before the one
-- picked failed the test, so a subset of them fails it too.
local function level_for(len)
  for k, l in ipairs(all_levels) do
    if len / l.ms <= 64 then return k end
  end
  return #all_levels
end
local need = {[1] = true}
need[level_for(kpi_ms)] = true
for _, w in ipairs(wins) do
  if w.len > 0 then
    need[level_for(w.len)] = true
  else
    for k = 2, #all_levels do
      if all_levels[k - 1].ms * 64 < DAY then need[k] = true end
    end
  end
end
local levels = {}
for k, l in ipairs(all_levels) do
  if need[k] then levels[#levels + 1] = l end
end

-- [start, end) of a window ending at e.
local function win_start(w, e)
  if w.len > 0 then return e - w.len end
  local last = e - 1
  return last - ((last + tz_ms) % DAY)
end

-- One read for the partition's strings. xat: the expiry (ms since the
-- epoch) last given to bucket keys, so that it never goes back; xoff: the
-- off this script version last wrote, xfrom: the newest event time applied
-- by anything else (an earlier version of this script, which refreshed
-- every key on every write and created fewer of them): buckets up to it get
-- their keys' TTLs refreshed on every write, as then.
local pv = call('MGET', p .. 'off', p .. 'maxt', p .. 'wm',
                      p .. 'xat', p .. 'xoff', p .. 'xfrom')
local cur = tonumber(pv[1] or '-1')
local fresh = cur < next_off
local mset = {}

local touched, order = {}, {}
local overflow = 0

-- The scope -> end of its last snapshot (sg:{pN}:snap) of scopes, read in
-- chunks of 1000.
local function snap_ends(scopes)
  local ends = {}
  local j = 1
  while j <= #scopes do
    local last = min(j + 999, #scopes)
    local got = call('HMGET', p .. 'snap', unpack(scopes, j, last))
    for k = j, last do ends[scopes[k]] = tonumber(got[k - j + 1]) end
    j = last + 1
  end
  return ends
end
local snap_end

-- Adds n (NF counters) to the running window sums of scope whose range
-- already covers bucket: a late event within the lateness. A window's end
-- is never past the scope's last snapshot end (both are written together,
-- the snapshot end last), so a bucket at or after that needs no look.
local wcache = {}
local function add_to_windows(scope, bucket, n)
  local se = snap_end[scope]
  if not se or bucket >= se then return end
  for _, w in ipairs(wins) do
    local wkey = p .. 'w:' .. scope .. ':' .. w.name
    local r = wcache[wkey]
    if not r then
      local h = call('HMGET', wkey, 's', 'e')
      r = {tonumber(h[1]), tonumber(h[2])}
      wcache[wkey] = r
    end
    if r[1] and bucket >= r[1] and bucket < r[2] then
      for f = 1, NF do
        if n[f] ~= 0 then call('HINCRBY', wkey, fields[f], n[f]) end
      end
    end
  end
end

-- TTLs of bucket keys. A key gets one when it may have been created, and
-- is refreshed when its scope gets a new bucket; not on every write. All
-- keys of a call get the same expiry time, which never goes back (xat):
-- the b:, u: and i: keys of a bucket are created and refreshed together,
-- so they expire together, and a minute or hour key is refreshed with each
-- of its buckets, so it outlives them. A write to a bucket whose b: key
-- already held a counter therefore finds its u: and i: keys (and levels)
-- alive and with a TTL.
local xat_old = tonumber(pv[4])
local xat
local function keep(key)
  if not xat then
    local t = call('TIME')
    xat = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) +
          ttl * 1000
    if xat_old and xat_old > xat then xat = xat_old end
    mset[#mset + 1] = p .. 'xat'
    xat = fmt(xat)
    mset[#mset + 1] = xat
  end
  call('PEXPIREAT', key, xat)
end

-- Adds counts {member = n} to the sorted set key, keeps its cap heaviest
-- members, and returns the clicks of the members it dropped and whether
-- every member was new (the key may have been created).
local function zadd_counts(key, counts)
  -- ZINCRBY per distinct source: O(log n) each, where a union with a
  -- scratch set would cost the whole set every batch.
  local any, created = false, true
  for m, n in pairs(counts) do
    if tonumber(call('ZINCRBY', key, itext(n), m)) ~= n then
      created = false
    end
    any = true
  end
  if not any then return 0, false end
  local dropped = 0
  local over = call('ZCARD', key) - max_sources
  if over > 0 then
    local gone = call('ZPOPMIN', key, over)
    for k = 2, #gone, 2 do dropped = dropped + tonumber(gone[k]) end
  end
  return dropped, created
end

if fresh then
  local xfrom = tonumber(pv[6] or '-1')
  if cur >= 0 and pv[5] ~= pv[1] then
    -- Someone else wrote since this version's last batch (or it never
    -- did): what it wrote is at or before its maxt.
    local mt = tonumber(pv[2] or '-1')
    if mt > xfrom then
      xfrom = mt
      mset[#mset + 1] = p .. 'xfrom'
      mset[#mset + 1] = fmt(xfrom)
    end
  end

  local nsrc = tonumber(ARGV[i]); i = i + 1
  if nsrc > 0 then
    local so, sot = {}, {}
    for _ = 1, nsrc do
      so[#so + 1] = ARGV[i]; so[#so + 1] = ARGV[i + 1]
      sot[#sot + 1] = ARGV[i]; sot[#sot + 1] = ARGV[i + 2]
      i = i + 3
    end
    chunked('HSET', p .. 'src', so, 1, #so)
    chunked('HSET', p .. 'srct', sot, 1, #sot)
  end

  -- Parse the entries; their lists stay in ARGV as [first, last] ranges
  -- (r: devices, IPs, devices of impressions, IPs and devices of clicks).
  -- Small numbers (counts, field numbers, buckets) repeat: each text is
  -- converted once.
  local num = setmetatable({}, {__index = function(t, k)
    local v = tonumber(k)
    t[k] = v
    return v
  end})
  local ents = {}
  local nent = tonumber(ARGV[i]); i = i + 1
  for _ = 1, nent do
    local scope, bstr = ARGV[i], ARGV[i + 1]
    i = i + 2
    -- The counters C sent (the non-zero ones, as field number and value);
    -- s keeps their text for HINCRBY until the script changes one, fs
    -- lists the non-zero ones in order. (Tables made at their size.)
    local n = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
    local s = {false, false, false, false, false, false, false, false,
               false, false, false, false, false, false, false, false,
               false, false, false}
    local fs = {}
    for k = 1, num[ARGV[i]] do
      local f, v = num[ARGV[i + 1]], ARGV[i + 2]
      n[f] = v + 0
      s[f] = v
      fs[k] = f
      i = i + 2
    end
    i = i + 1
    local ndev, nimp = num[ARGV[i]], num[ARGV[i + 1]]
    local d0 = i + 2
    local nip = num[ARGV[d0 + ndev]]
    local i0 = d0 + ndev + 1
    local r = {d0, d0 + ndev - 1, i0, i0 + nip - 1, d0, d0 + nimp - 1,
               0, -1, 0, -1}
    i = i0 + nip
    if string.byte(scope, -1) == 124 then -- '|': a channel entry
      local ncip = num[ARGV[i]]
      local ncdev = num[ARGV[i + ncip + 1]]
      r[7], r[8] = i + 1, i + ncip
      r[9], r[10] = i + ncip + 2, i + ncip + 1 + ncdev
      i = i + ncip + 2 + ncdev
    end
    ents[#ents + 1] = {scope = scope, bstr = bstr, bucket = num[bstr], n = n,
                       s = s, fs = fs, r = r}
  end

  -- Bounded scopes: past max_scopes, a new channel counts as "_other" (its
  -- campaigns as "_other|_other") and a new campaign of a known channel as
  -- "<channel>|_other". The _other scopes are always admitted: at most one
  -- per channel, plus "_other|" and "_other|_other". Which of the batch's
  -- scopes are known is asked once (SMISMEMBER), in chunks.
  local nscopes = call('SCARD', p .. 'scopes')
  local known, mapped = {}, {}
  do
    local ask, seen = {}, {}
    for _, e in ipairs(ents) do
      if not seen[e.scope] then
        seen[e.scope] = true
        ask[#ask + 1] = e.scope
      end
    end
    local j = 1
    while j <= #ask do
      local last = min(j + 999, #ask)
      local got = call('SMISMEMBER', p .. 'scopes',
                             unpack(ask, j, last))
      for k = j, last do known[ask[k]] = got[k - j + 1] == 1 end
      j = last + 1
    end
  end
  local function admit(scope)
    if known[scope] == nil then
      known[scope] = call('SISMEMBER', p .. 'scopes', scope) == 1
    end
    if known[scope] then return true end
    if nscopes < max_scopes or scope == '_other|' or
       string.sub(scope, -7) == '|_other' then
      call('SADD', p .. 'scopes', scope)
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
    if not touched[e.scope] then
      touched[e.scope] = true
      order[#order + 1] = e.scope
    end
  end
  snap_end = snap_ends(order)

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
    bump(ents[e1], f, 1)
    bump(ents[e2], f, 1)
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
      local got = call('HMGET', p .. 'ck:' .. fmt(h), unpack(ids))
      for k = 1, #ids do
        if got[k] then found[k] = tonumber(got[k]) end
      end
      h = h + HOUR
    end
    for k, c in ipairs(pending) do
      if found[k] then
        ctc(c.e1, c.e2, c.t - found[k])
      else
        bump(ents[c.e1], F_NOCLICK, 1)
        bump(ents[c.e2], F_NOCLICK, 1)
      end
    end
  end
  for h, l in pairs(clicks_by_hour) do
    local key = p .. 'ck:' .. h
    chunked('HSET', key, l, 1, #l)
    call('EXPIRE', key, click_ttl + 3600)
  end

  -- Only the trim below removes a member from a bucket index while the
  -- bucket's b: key lives (bi: expires with or after its buckets), and no
  -- trim so far reached past maxt - retention.
  local horizon = tonumber(pv[2] or '-1') - ttl * 1000
  local grew = {}
  for _, e in ipairs(ents) do
    local scope, bstr, bucket = e.scope, e.bstr, e.bucket
    local bar = string.find(scope, '|', 1, true)
    local channel_scope = bar == #scope
    local fc_key, fc_marked, sc_new

    -- Frequency cap: impressions per device and day in this scope. The
    -- field "" (never a device id) marks a key this version gave a TTL.
    local r = e.r
    if freq_cap > 0 and r[6] >= r[5] then
      local day = floor_to(bucket + tz_ms, DAY)
      local key = p .. 'fc:' .. scope .. ':' .. fmt(day)
      local cnt, devs = {}, {''}
      for k = r[5], r[6] do
        local d = ARGV[k]
        if not cnt[d] then devs[#devs + 1] = d; cnt[d] = 0 end
        cnt[d] = cnt[d] + 1
      end
      local old, set = {}, {}
      local j = 1
      while j <= #devs do
        local last = min(j + 999, #devs)
        local got = call('HMGET', key, unpack(devs, j, last))
        for k = j, last do old[k] = tonumber(got[k - j + 1]) or 0 end
        j = last + 1
      end
      local marked = old[1] == 1
      if not marked then
        set[1] = ''
        set[2] = '1'
      end
      local over = 0
      for k = 2, #devs do
        local d = devs[k]
        local now = old[k] + cnt[d]
        over = over + max(0, now - freq_cap) -
               max(0, old[k] - freq_cap)
        set[#set + 1] = d
        set[#set + 1] = itext(now)
      end
      chunked('HSET', key, set, 1, #set)
      fc_key, fc_marked = key, marked
      if over ~= 0 then bump(e, F_FREQ, over) end
    end

    -- Clicks per source, at every level; what a cap drops is counted.
    if channel_scope then
      local counts = {}
      for k = r[7], r[8] do
        local s = 'ip:' .. ARGV[k]
        counts[s] = (counts[s] or 0) + 1
      end
      for k = r[9], r[10] do
        local s = 'device:' .. ARGV[k]
        counts[s] = (counts[s] or 0) + 1
      end
      if next(counts) then
        sc_new = {}
        for li, lv in ipairs(levels) do
          local key = p .. 'sc' .. lv.tag .. ':' .. scope .. ':' ..
                      fmt(floor_to(bucket, lv.ms))
          local dropped, created = zadd_counts(key, counts)
          sc_new[#sc_new + 1] = {key, created}
          if li == 1 and dropped ~= 0 then bump(e, F_UNTRACKED, dropped) end
        end
      end
    end

    -- The counters; a bucket hash that held none of them is new.
    local bkey = p .. 'b:' .. scope .. ':' .. bstr
    local created = true
    local n, s = e.n, e.s
    for _, f in ipairs(e.fs) do
      local v = n[f]
      if call('HINCRBY', bkey, fields[f], s[f] or fmt(v)) ~= v then
        created = false
      end
    end
    -- A bucket is new to the scope when its b: key is (or its index may
    -- have lost it, or an earlier version wrote it): it goes into the
    -- bucket index and its KPI window into open, and its keys get TTLs.
    local refresh = created or bucket <= xfrom
    if refresh or bucket < horizon then
      if call('ZADD', p .. 'bi:' .. scope, bstr, bstr) == 1 then
        refresh = true
      end
    end
    if refresh then keep(bkey) end
    if fc_key and (refresh or not fc_marked) then
      call('EXPIRE', fc_key, FC_TTL)
    end
    if sc_new then
      for _, k in ipairs(sc_new) do
        if refresh or k[2] then keep(k[1]) end
      end
    end
    add_to_windows(scope, bucket, e.n)

    -- Unique devices (u) and IPs (i), at every level. With the b: key, the
    -- u: and i: keys are created (empty if need be) and given the same TTL.
    for l, kind in ipairs(KINDS) do
      local a, b = r[2 * l - 1], r[2 * l]
      local has = b >= a
      if has or refresh then
        for li, lv in ipairs(levels) do
          local key = p .. kind .. lv.tag .. ':' .. scope .. ':' ..
                      (li == 1 and bstr or fmt(floor_to(bucket, lv.ms)))
          if has then
            chunked('PFADD', key, ARGV, a, b)
          else
            call('PFADD', key)
          end
          if refresh then keep(key) end
        end
      end
    end

    if refresh then
      local ws = floor_to(bucket, kpi_ms)
      call('ZADD', p .. 'open', fmt(ws + kpi_ms),
                 scope .. '|' .. fmt(ws))
      grew[scope] = true
    end
  end

  -- The bucket index forgets buckets older than the retention when it
  -- grows.
  for _, scope in ipairs(order) do
    if grew[scope] then
      local bi = p .. 'bi:' .. scope
      call('ZREMRANGEBYSCORE', bi, '-inf',
                 '(' .. fmt(max_t - ttl * 1000))
      keep(bi)
    end
  end
  mset[#mset + 1] = p .. 'off'
  mset[#mset + 1] = ARGV[2]
  mset[#mset + 1] = p .. 'xoff'
  mset[#mset + 1] = ARGV[2]
  local old_t = tonumber(pv[2] or '0')
  if max_t > old_t then
    mset[#mset + 1] = p .. 'maxt'
    mset[#mset + 1] = fmt(max_t)
  end
end

-- The highest watermark so far (aggregate.c keeps it from going back).
if wm ~= '-inf' then
  local old_wm = tonumber(pv[3] or '-1e300')
  if tonumber(wm) > old_wm then
    mset[#mset + 1] = p .. 'wm'
    mset[#mset + 1] = wm
  end
end
if #mset > 0 then call('MSET', unpack(mset)) end

-- Adds sign * the bucket counters of scope starting in [from, to) to tot.
local function add_buckets(scope, from, to, tot, sign)
  if to <= from then return end
  local bs = call('ZRANGEBYSCORE', p .. 'bi:' .. scope, fmt(from),
                        '(' .. fmt(to))
  for _, b in ipairs(bs) do
    local h = call('HMGET', p .. 'b:' .. scope .. ':' .. b,
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
  for _, kind in ipairs(KINDS) do
    local keys = level_keys(kind, scope, from, to)
    out[#out + 1] = #keys > 0 and call('PFCOUNT', unpack(keys)) or 0
  end
end

-- The heaviest sources of a channel scope over [from, to).
local function top_sources(scope, from, to, out)
  local keys = level_keys('sc', scope, from, to)
  local tmp = p .. 'tmp'
  call('ZUNIONSTORE', tmp, #keys, unpack(keys))
  local top = call('ZREVRANGE', tmp, 0, 9, 'WITHSCORES')
  call('DEL', tmp)
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
  local h = call('HMGET', wkey, 's', 'e', unpack(fields))
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
  call('HSET', wkey, unpack(set))
  call('EXPIRE', wkey, ttl)
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
    scopes = call('SMEMBERS', p .. 'scopes')
    snap_end = snap_ends(scopes)
  end
  local nsnap = 0
  local ends = {}
  for _, scope in ipairs(scopes) do
    local last = snap_end[scope] or 0
    if wm_end > last and nsnap + #wins > SNAP_BUDGET then
      more = 1
    elseif wm_end > last then
      local from = last + snap_ms
      if from < wm_end - (MAX_STEPS - 1) * snap_ms then
        from = wm_end - (MAX_STEPS - 1) * snap_ms
      end
      if last == 0 then
        local first = call('ZRANGE', p .. 'bi:' .. scope, 0, 0)
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
        e = e + snap_ms
      end
      if e > from then
        ends[#ends + 1] = scope
        ends[#ends + 1] = fmt(e - snap_ms)
      end
    end
  end
  chunked('HSET', p .. 'snap', ends, 1, #ends)
  out[nsnap_at] = nsnap
end

-- At most CLOSE_LIMIT (aggregate.c) per call; the caller comes back for more.
local closed = call('ZRANGEBYSCORE', p .. 'open', '-inf', wm, 'LIMIT', 0, 1000)
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
