// The Lua scripts of RedisPresence. A room's keys share the room's hash tag:
//   KEYS[1] `presence:{ROOM}`        client -> entry JSON {user, client, info?, node}
//   KEYS[2] `presence-users:{ROOM}`  user -> how many of the room's entries are that user's
//   KEYS[3] `presence-gone:{ROOM}`   client -> 1: entries a sweep removed (and announced the leave of)
// Each script keeps the three consistent in one atomic step, so counts are two
// HLENs, and a sweep's removals and leaves can never interleave with the
// returning instance's rewrite and joins (docs/protocol.md "An instance crashes").
// Node keys come from ARGV, which is fine on one Redis (as in the membership);
// Redis Cluster would need them under the room's hash tag.

/** Lua: takes one entry of `user` out of the per-user counts. */
const UNCOUNT = `
local function uncount(user)
  if type(user) == 'string' and redis.call('HINCRBY', KEYS[2], user, -1) <= 0 then
    redis.call('HDEL', KEYS[2], user)
  end
end
`;

/** Lua: the entry's user, or nil when the value is not an entry. */
const DECODE = `
local function decode(value)
  local ok, entry = pcall(cjson.decode, value)
  if ok and type(entry) == 'table' then return entry end
  return nil
end
`;

// ARGV[1] client, ARGV[2] entry JSON, ARGV[3] user, ARGV[4] ttl ms.
// Adds or replaces the entry; a new one counts for its user.
export const ADD_SCRIPT = `
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1`;

// ARGV[1] client. Removes the entry, if any, and its count. Returns 1 if there was one.
export const REMOVE_SCRIPT = `${UNCOUNT}${DECODE}
local value = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
if not value then return 0 end
redis.call('HDEL', KEYS[1], ARGV[1])
local entry = decode(value)
if entry then uncount(entry.user) end
return 1`;

// ARGV[1] the node key prefix. Returns the entries whose node is live. Entries of
// nodes that are gone are hidden, not deleted: deleting is the sweep's job, which
// announces their leaves. Values that are not entries are deleted.
export const LIST_SCRIPT = `${DECODE}
local fields = redis.call('HGETALL', KEYS[1])
local live = {}
local out = {}
for i = 1, #fields, 2 do
  local value = fields[i + 1]
  local entry = decode(value)
  local node = entry and entry.node or nil
  if type(node) == 'string' then
    if live[node] == nil then live[node] = redis.call('EXISTS', ARGV[1] .. node) == 1 end
    if live[node] then out[#out + 1] = value end
  else
    redis.call('HDEL', KEYS[1], fields[i])
  end
end
return out`;

// Returns {entries, distinct users}: O(1).
export const STATS_SCRIPT = `
return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[2])}`;

// One room's part of sweeping a node that is gone.
// ARGV[1] the node's key ('' for an earlier process of this instance: swept even
// while its key lives), ARGV[2] its id, ARGV[3] the room's channel ('' to announce
// nothing), ARGV[4] and ARGV[5] the leave envelope's header around its "c" field,
// ARGV[6] the entry suffix `,"node":"ID"}`, ARGV[7] tombstone ttl ms.
// Does nothing (returns -1) if the node is live again; else removes its entries,
// remembers them as gone and publishes each one's leave with the member exactly
// as its join carried it (the entry without its node). Returns how many it removed.
export const SWEEP_ROOM_SCRIPT = `${UNCOUNT}${DECODE}
if redis.call('EXISTS', ARGV[1]) == 1 then return -1 end
local fields = redis.call('HGETALL', KEYS[1])
local suffix = ARGV[6]
local removed = 0
for i = 1, #fields, 2 do
  local client, value = fields[i], fields[i + 1]
  local entry = decode(value)
  if entry and entry.node == ARGV[2] then
    redis.call('HDEL', KEYS[1], client)
    uncount(entry.user)
    redis.call('HSET', KEYS[3], client, 1)
    removed = removed + 1
    if ARGV[3] ~= '' then
      local member
      if #value > #suffix and string.sub(value, -#suffix) == suffix then
        member = string.sub(value, 1, #value - #suffix) .. '}'
      else
        entry.node = nil
        member = cjson.encode(entry)
      end
      redis.call('PUBLISH', ARGV[3], ARGV[4] .. cjson.encode(client) .. ARGV[5] .. member)
    end
  end
end
if removed > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[7]) end
return removed`;

// The end of a sweep: KEYS[1] the node's room index, KEYS[2] the index of nodes with
// entries, KEYS[3] the sweep lock. ARGV[1] the node's key, ARGV[2] its id, ARGV[3]
// the lock's token. Drops the node from the indexes unless it is live again.
export const SWEEP_DONE_SCRIPT = `
if redis.call('EXISTS', ARGV[1]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
end
if redis.call('GET', KEYS[3]) == ARGV[3] then redis.call('DEL', KEYS[3]) end
return 1`;

// After this instance was out of the cluster: writes its entries of one room again.
// ARGV[1] ttl ms, ARGV[2] the room's channel ('' to announce nothing), then for each
// entry: client, entry JSON, user, join envelope. An entry that a sweep removed (it
// has a tombstone) was announced as left, so its join is published again; one that
// is still there, or that Redis lost without a sweep, is written without a join.
// Returns how many joins it published.
export const REWRITE_SCRIPT = `
local joins = 0
for i = 3, #ARGV, 4 do
  local client = ARGV[i]
  if redis.call('HSET', KEYS[1], client, ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[2], ARGV[i + 2], 1)
    if redis.call('HDEL', KEYS[3], client) == 1 and ARGV[2] ~= '' then
      redis.call('PUBLISH', ARGV[2], ARGV[i + 3])
      joins = joins + 1
    end
  else
    redis.call('HDEL', KEYS[3], client)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return joins`;

/** The keys of presence under one prefix. */
export class PresenceKeys {
  private readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** The room's entries, per-user counts and tombstones: one hash tag, so one script may touch all three. */
  room(room: string): [string, string, string] {
    return [this.entries(room), `${this.prefix}presence-users:{${room}}`, `${this.prefix}presence-gone:{${room}}`];
  }

  entries(room: string): string {
    return `${this.prefix}presence:{${room}}`;
  }

  /** The rooms where instance `node` has entries: what a sweep of it reads. */
  rooms(node: string): string {
    return `${this.prefix}presence-rooms:${node}`;
  }

  /** The instances that have entries anywhere: what a sweep looks through. */
  nodes(): string {
    return `${this.prefix}presence-nodes`;
  }

  /** The claim on sweeping instance `node`. */
  lock(node: string): string {
    return `${this.prefix}presence-sweep:${node}`;
  }
}
