// The Lua scripts of a room's history in Redis: the append+publish that
// RedisBroker.append runs (on Redis Cluster an append, and a release once a
// replica has it), and the read of RedisHistory. Each runs atomically, so
// every instance and every reader agree on offsets, and the room's messages
// are published in offset order.

/**
 * A room's history keys: its stream and its meta hash (epoch, last offset).
 * The room in braces is their hash tag, so both live in one Redis Cluster slot.
 */
export function historyKeys(prefix: string, room: string): [stream: string, meta: string] {
  return [`${prefix}history:{${room}}`, `${prefix}meta:{${room}}`];
}

// KEYS[1] the stream, KEYS[2] the meta hash.
// ARGV[1] an epoch for a room that has none, ARGV[2] MAXLEN, ARGV[3] stream ttl ms,
// ARGV[4] meta ttl ms, ARGV[5] channel, ARGV[6] and ARGV[7] the envelope's head and tail.
// Appends the message as the room's next offset; the scripts below end it.
const APPEND = `
if redis.call('HSETNX', KEYS[2], 'epoch', ARGV[1]) == 1 then
  -- A new epoch: anything the stream still holds belongs to a lost one.
  redis.call('DEL', KEYS[1])
end
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local offset = redis.call('HINCRBY', KEYS[2], 'offset', 1)
local id = string.format('%d', offset)
local now = redis.call('TIME')
local ms = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
local text = ARGV[6] .. ',"o":' .. id .. ',"e":"' .. epoch .. '"' .. ARGV[7]
redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[2], id .. '-0', 'm', text, 't', ms)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])`;

/** One Redis: appends and PUBLISHes in one step. Returns {offset, epoch}. */
export const PUBLISH_SCRIPT = `${APPEND}
redis.call('PUBLISH', ARGV[5], text)
return {offset, epoch}`;

/**
 * Redis Cluster: only appends. The broker publishes once a replica has the
 * append (broker/replicas.ts), with RELEASE_SCRIPT; the meta's `published` is
 * the last offset published (for a room from before, every earlier one).
 * Returns {offset, epoch}.
 */
export const APPEND_SCRIPT = `${APPEND}
redis.call('HSETNX', KEYS[2], 'published', offset - 1)
return {offset, epoch}`;

// KEYS[1] the stream, KEYS[2] the meta hash; ARGV[1] an offset a replica has
// (and so every one before it), ARGV[2] its epoch, ARGV[3] the room's channel.
// SPUBLISHes, in offset order, every message up to it not published yet, each
// once: appends whose publishers answered out of order, or never (they died),
// still go out in the room's order. Returns how many it published.
export const RELEASE_SCRIPT = `
if redis.call('HGET', KEYS[2], 'epoch') ~= ARGV[2] then return 0 end
local published = tonumber(redis.call('HGET', KEYS[2], 'published') or '0')
local upto = tonumber(ARGV[1])
if upto <= published then return 0 end
local from = string.format('%d', published + 1) .. '-0'
local entries = redis.call('XRANGE', KEYS[1], from, string.format('%d', upto) .. '-0')
for i = 1, #entries do
  local fields = entries[i][2]
  for f = 1, #fields, 2 do
    if fields[f] == 'm' then redis.call('SPUBLISH', ARGV[3], fields[f + 1]) end
  end
end
redis.call('HSET', KEYS[2], 'published', string.format('%d', upto))
return #entries`;

// KEYS[1] the stream, KEYS[2] the meta hash.
// ARGV[1] an epoch for a room that has none, ARGV[2] ttl ms, ARGV[3] meta ttl ms,
// ARGV[4] since offset ('' for the latest messages), ARGV[5] since epoch, ARGV[6] limit (-1: none).
// Returns {epoch, last offset, oldest retained offset (last + 1 when none), message texts...}.
export const READ_SCRIPT = `
if redis.call('HSETNX', KEYS[2], 'epoch', ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1])
end
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local epoch = redis.call('HGET', KEYS[2], 'epoch')
local last = tonumber(redis.call('HGET', KEYS[2], 'offset') or '0')
local now = redis.call('TIME')
local cutoff = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - tonumber(ARGV[2])

local function field(entry, name)
  local fields = entry[2]
  for i = 1, #fields, 2 do
    if fields[i] == name then return fields[i + 1] end
  end
  return nil
end
local function offset_of(entry) return tonumber(string.match(entry[1], '^(%d+)')) end
local function fresh(entry) return tonumber(field(entry, 't') or '0') > cutoff end
local function at_or_after(offset)
  return redis.call('XRANGE', KEYS[1], string.format('%d', offset) .. '-0', '+', 'COUNT', 1)[1]
end

-- The oldest unexpired message. Messages are in time order, so when the first
-- is expired a binary search finds the boundary in O(log size) lookups.
local oldest = last + 1
local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)[1]
if first and fresh(first) then
  oldest = offset_of(first)
elseif first then
  local lo, hi = offset_of(first) + 1, last
  while lo <= hi do
    local mid = math.floor((lo + hi) / 2)
    local entry = at_or_after(mid)
    if not entry then
      hi = mid - 1
    elseif fresh(entry) then
      oldest = offset_of(entry)
      hi = mid - 1
    else
      lo = offset_of(entry) + 1
    end
  end
end

local out = {epoch, last, oldest}
local limit = tonumber(ARGV[6])
local count = {}
if limit > 0 then count = {'COUNT', limit} end
if limit ~= 0 and oldest <= last then
  if ARGV[4] == '' then
    local range = redis.call('XREVRANGE', KEYS[1], '+', string.format('%d', oldest) .. '-0', unpack(count))
    for i = #range, 1, -1 do out[#out + 1] = field(range[i], 'm') end
  elseif ARGV[5] == epoch and tonumber(ARGV[4]) < last then
    local from = math.max(tonumber(ARGV[4]) + 1, oldest)
    local range = redis.call('XRANGE', KEYS[1], string.format('%d', from) .. '-0', '+', unpack(count))
    for i = 1, #range do out[#out + 1] = field(range[i], 'm') end
  end
end
return out`;
