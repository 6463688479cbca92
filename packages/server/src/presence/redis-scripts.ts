// The Lua scripts of RedisPresence. Every script touches the keys of one hash
// slot only, as Redis Cluster requires, and publishes only on a channel of that
// slot (SPUBLISH on the cluster, where a room's channel carries the room's hash
// tag too). A room's keys share the room's hash tag:
//   KEYS[1] `presence:{ROOM}`        client -> entry JSON {user, client, info?, node}
//   KEYS[2] `presence-users:{ROOM}`  user -> how many of the room's entries are that user's
//   KEYS[3] `presence-gone:{ROOM}`   client -> 1: entries a sweep removed (and announced the leave of)
//   KEYS[4] `presence-lives:{ROOM}`  node -> the newest life of that instance that wrote here
// Each script keeps them consistent in one atomic step, so counts are two
// HLENs, and a sweep's removals and leaves never interleave with the returning
// instance's rewrite and joins (docs/protocol.md "An instance crashes").
//
// Whether an instance is live is not read here (its membership key lives in
// another slot): the store asks outside the scripts and hands them the verdict
// as a life. A life is a number an instance takes each time it (re)writes its
// entries, larger than any it had before (redis-lives.ts); a sweep of a dead
// instance carries the life that instance had when it was found dead, and a
// room whose KEYS[4] shows a newer one is left alone: the instance is back.

import type { Member } from "crier-protocol";
import { parseJsonObject } from "../json-object.js";
import { memberOf, type PresenceEntry } from "./presence.js";

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

/** Lua: records that `node` wrote the room in life `life`, never moving its life back. */
const MARK = `
local function mark(node, life)
  local known = tonumber(redis.call('HGET', KEYS[4], node))
  if not known or known < tonumber(life) then redis.call('HSET', KEYS[4], node, life) end
end
`;

/** Lua: pushes back the room's keys' expiry. */
const EXPIRE = `
local function expire(ttl)
  redis.call('PEXPIRE', KEYS[1], ttl)
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[4], ttl)
end
`;

// ARGV[1] client, ARGV[2] entry JSON, ARGV[3] user, ARGV[4] ttl ms, ARGV[5] node, ARGV[6] its life.
// Adds or replaces the entry; a new one counts for its user.
export const ADD_SCRIPT = `${MARK}${EXPIRE}
if redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) == 1 then redis.call('HINCRBY', KEYS[2], ARGV[3], 1) end
redis.call('HDEL', KEYS[3], ARGV[1])
mark(ARGV[5], ARGV[6])
expire(ARGV[4])
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

// Returns every entry, the live and the dead instances' alike (the store keeps
// the live ones: hiding the others, not deleting them, since deleting is the
// sweep's job, which announces their leaves). Values that are not entries are deleted.
export const LIST_SCRIPT = `${DECODE}
local fields = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #fields, 2 do
  local value = fields[i + 1]
  local entry = decode(value)
  if entry and type(entry.node) == 'string' then out[#out + 1] = value
  else redis.call('HDEL', KEYS[1], fields[i]) end
end
return out`;

// Returns {entries, distinct users}: O(1).
export const STATS_SCRIPT = `
return {redis.call('HLEN', KEYS[1]), redis.call('HLEN', KEYS[2])}`;

// One room's part of sweeping an instance that is gone.
// ARGV[1] its id, ARGV[2] the life it had when found dead ('' for an earlier
// process of this instance: every entry goes), ARGV[3] the room's channel (''
// to announce nothing), ARGV[4] and ARGV[5] the leave envelope's header around
// its "c" field, ARGV[6] the entry suffix `,"node":"ID"}`, ARGV[7] tombstone ttl ms.
// Does nothing (returns -1) if the instance wrote the room in a newer life (it
// is back); else removes its entries, remembers them as gone and publishes each
// one's leave with the member exactly as its join carried it (the entry without
// its node). Returns how many it removed.
export const SWEEP_ROOM_SCRIPT = `${UNCOUNT}${DECODE}
local dead = tonumber(ARGV[2])
local life = tonumber(redis.call('HGET', KEYS[4], ARGV[1]))
if dead and life and life > dead then return -1 end
local fields = redis.call('HGETALL', KEYS[1])
local suffix = ARGV[6]
local removed = 0
for i = 1, #fields, 2 do
  local client, value = fields[i], fields[i + 1]
  local entry = decode(value)
  if entry and entry.node == ARGV[1] then
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
redis.call('HDEL', KEYS[4], ARGV[1])
if removed > 0 then redis.call('PEXPIRE', KEYS[3], ARGV[7]) end
return removed`;

// After this instance was out of the cluster: writes its entries of one room again.
// ARGV[1] ttl ms, ARGV[2] the room's channel ('' to announce nothing), ARGV[3]
// the node, ARGV[4] its new life, then for each entry: client, entry JSON, user,
// join envelope. An entry that a sweep removed (it has a tombstone) was
// announced as left, so its join is published again; one that is still there,
// or that Redis lost without a sweep, is written without a join. The new life
// goes first, so a sweep of the old one that comes later leaves the room alone.
// Returns how many joins it published.
export const REWRITE_SCRIPT = `${MARK}${EXPIRE}
mark(ARGV[3], ARGV[4])
local joins = 0
for i = 5, #ARGV, 4 do
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
expire(ARGV[1])
return joins`;

/**
 * The stored form: the member exactly as its join carries it, with the node
 * last, so the sweep script gets the join's member back by cutting the node off.
 */
export function entryText(entry: PresenceEntry): string {
  return JSON.stringify({ ...memberOf(entry), node: entry.node });
}

/** Parses a stored entry into the member clients see and its instance; undefined when it is not one. */
export function parseEntry(text: string): { member: Member; node: string } | undefined {
  const v = parseJsonObject(text);
  if (v === undefined) return undefined;
  if (typeof v.user !== "string" || typeof v.client !== "string" || typeof v.node !== "string") return undefined;
  const member: Member = { user: v.user, client: v.client };
  if (typeof v.info === "object" && v.info !== null && !Array.isArray(v.info)) member.info = v.info as Member["info"];
  return { member, node: v.node };
}

/** A script that publishes, with SPUBLISH instead of PUBLISH on Redis Cluster (the channel is in the script's slot). */
export function sharded(script: string, shard: boolean): string {
  return shard ? script.replaceAll("redis.call('PUBLISH'", "redis.call('SPUBLISH'") : script;
}

/** The keys of presence under one prefix. */
export class PresenceKeys {
  private readonly prefix: string;

  constructor(prefix: string) {
    this.prefix = prefix;
  }

  /** The room's entries, per-user counts, tombstones and writers' lives: one hash tag, so one script may touch all four. */
  room(room: string): [string, string, string, string] {
    const tag = `{${room}}`;
    const p = this.prefix;
    return [this.entries(room), `${p}presence-users:${tag}`, `${p}presence-gone:${tag}`, `${p}presence-lives:${tag}`];
  }

  entries(room: string): string {
    return `${this.prefix}presence:{${room}}`;
  }

  /** Room -> life: the rooms where instance `node` has entries, what a sweep of it reads; under the node's hash tag. */
  rooms(node: string): string {
    return `${this.prefix}presence-rooms:{${node}}`;
  }

  /** The claim on sweeping instance `node`, in the slot of its rooms. */
  lock(node: string): string {
    return `${this.prefix}presence-sweep:{${node}}`;
  }

  /** Node -> its newest life: the instances that have entries anywhere, what a sweep looks through. */
  nodes(): string {
    return `${this.prefix}presence-instances`;
  }
}
