-- Atomic hand-off of a batch: fence on the lease, write outputs, advance the
-- input watermark, acknowledge the inputs.  On a Redis Cluster a batch is one
-- room's: all KEYS share the room's hash slot.  On a plain Redis one batch may
-- span rooms ("P" switches the progress hash).
--
-- ARGV[1] group, ARGV[2] lease token, ARGV[3] trim mode (minid|maxlen|none),
-- ARGV[4] trim value, ARGV[5] index in KEYS of the (first) room's progress hash,
-- ARGV[6] the ops, msgpack-encoded (one argument instead of thousands), each an array:
--   {"P", progress_idx}          the ops that follow are of the room whose progress
--                                hash is KEYS[progress_idx]
--   {"L", lease_idx, tag}        start a partition's ops: they apply only if the
--                                lease in KEYS[lease_idx] holds our token (read once)
--   {"A", in_idx, entry_id, wm_field}
--                                acknowledge an input entry; if the watermark says it
--                                was already handled, its outputs are skipped
--   {"E", out_idx, dedup_field, seq, part, {f1, v1, ... fn, vn}}
--                                add an output entry unless (seq, part) is not above
--                                the last one recorded in dedup_field ("" = always)
--   {"F", fin_field}             mark the partition finished (end of stream handled)
--   {"B", out_idx, bell_idx}     the bell of the stream KEYS[out_idx]: after the writes, one
--                                entry on each bell lists the streams written ("keys")
-- Returns {written, duplicates, acked, fenced tags...}.

local group, token = ARGV[1], ARGV[2]
local trim_mode, trim_value = ARGV[3], ARGV[4]

local function parse_id(id)
  local ms, sq = string.match(id, "^(%d+)-(%d+)$")
  return tonumber(ms), tonumber(sq)
end

local function id_after(a, b)
  local am, as = parse_id(a)
  local bm, bs = parse_id(b)
  if am ~= bm then return am > bm end
  return as > bs
end

local function order_after(seq, part, stored)
  local s, p = string.match(stored, "^(%d+):(%d+)$")
  s, p = tonumber(s), tonumber(p)
  if seq ~= s then return seq > s end
  return part > p
end

local written, dups, acked = 0, 0, 0
local fenced = {}
local owner_ok, skip = false, false
-- progress values (per progress hash) and acknowledgements are gathered here and written
-- once at the end
local lease_ok, caches, dirty, acks = {}, {}, {}, {}
local bell_of, rung = {}, {}
local progress, progress_cache, progress_dirty

local function use_progress(key)
  progress = key
  progress_cache = caches[key]
  if progress_cache == nil then
    progress_cache, progress_dirty = {}, {}
    caches[key], dirty[key] = progress_cache, progress_dirty
  else
    progress_dirty = dirty[key]
  end
end
use_progress(KEYS[tonumber(ARGV[5])])

local function progress_get(field)
  local v = progress_cache[field]
  if v == nil then
    v = redis.call("HGET", progress, field) or false
    progress_cache[field] = v
  end
  return v
end

local function progress_set(field, value)
  progress_cache[field] = value
  progress_dirty[field] = true
end

local ops = cmsgpack.unpack(ARGV[6])
for _, op in ipairs(ops) do
  local kind = op[1]
  if kind == "P" then
    use_progress(KEYS[op[2]])
  elseif kind == "L" then
    local ok = lease_ok[op[2]]
    if ok == nil then
      ok = redis.call("GET", KEYS[op[2]]) == token
      lease_ok[op[2]] = ok
      if not ok then table.insert(fenced, op[3]) end
    end
    owner_ok = ok
    skip = false
  elseif kind == "A" then
    if owner_ok then
      local entry_id, wm_field = op[3], op[4]
      local wm = progress_get(wm_field)
      if wm and not id_after(entry_id, wm) then
        skip = true
      else
        skip = false
        progress_set(wm_field, entry_id)
      end
      local list = acks[op[2]]
      if list == nil then list = {}; acks[op[2]] = list end
      table.insert(list, entry_id)
    end
  elseif kind == "E" then
    if owner_ok and not skip then
      local dedup_field, seq, part = op[3], op[4], op[5]
      local fresh = true
      if dedup_field ~= "" then
        local stored = progress_get(dedup_field)
        if stored and not order_after(seq, part, stored) then fresh = false end
      end
      if fresh then
        if trim_mode == "minid" then
          redis.call("XADD", KEYS[op[2]], "MINID", "~", trim_value, "*", unpack(op[6]))
        elseif trim_mode == "maxlen" then
          redis.call("XADD", KEYS[op[2]], "MAXLEN", "~", trim_value, "*", unpack(op[6]))
        else
          redis.call("XADD", KEYS[op[2]], "*", unpack(op[6]))
        end
        if dedup_field ~= "" then
          progress_set(dedup_field, string.format("%d:%d", seq, part))
        end
        if bell_of[op[2]] then rung[op[2]] = true end
        written = written + 1
      else
        dups = dups + 1
      end
    end
  elseif kind == "F" then
    if owner_ok then progress_set(op[2], "1") end
  elseif kind == "B" then
    bell_of[op[2]] = op[3]
  else
    return redis.error_reply("commit.lua: unknown op " .. tostring(kind))
  end
end

for idx, ids in pairs(acks) do
  for i = 1, #ids, 1000 do
    acked = acked + redis.call("XACK", KEYS[idx], group, unpack(ids, i, math.min(i + 999, #ids)))
  end
end
for key, fields in pairs(dirty) do
  local values, hset = caches[key], {}
  for field, _ in pairs(fields) do
    table.insert(hset, field)
    table.insert(hset, values[field])
  end
  if #hset > 0 then redis.call("HSET", key, unpack(hset)) end
end

-- ring: one entry per bell, listing the streams that got entries (kept short: a wake-up,
-- not a record)
local ringing = {}
for out_idx, _ in pairs(rung) do
  local bell = bell_of[out_idx]
  local list = ringing[bell]
  if list == nil then list = {}; ringing[bell] = list end
  table.insert(list, KEYS[out_idx])
end
for bell, list in pairs(ringing) do
  redis.call("XADD", KEYS[bell], "MAXLEN", "~", "1000", "*", "keys", table.concat(list, " "))
end

local result = {written, dups, acked}
for _, tag in ipairs(fenced) do table.insert(result, tag) end
return result
