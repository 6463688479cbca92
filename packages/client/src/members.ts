// A subscription's member list: who is in the room, keyed by client id, read
// with `presence` after each (re)subscribe and kept current with the `join`
// and `leave` pushes. Pushes heard while a read is under way are held and
// applied on top of its answer, in order, so none is lost to the race between
// the read and the pushes (docs/protocol.md "Presence and join/leave events").

import type { JoinPush, LeavePush, Member } from "crier-protocol";

export class MemberList {
  readonly #members = new Map<string, Member>();
  /** Pushes held until the next read is answered; undefined while none is awaited. */
  #held: Array<JoinPush | LeavePush> | undefined = [];

  /** The members, keyed by client id. The map is live: it changes as members come and go. */
  get members(): ReadonlyMap<string, Member> {
    return this.#members;
  }

  /** The connection dropped: the list will be read again, so pushes are held until then. */
  reset(): void {
    this.#held = [];
  }

  /** A `join` or `leave`; true when the list changed now (not held for a read under way). */
  push(frame: JoinPush | LeavePush): boolean {
    if (this.#held !== undefined) {
      this.#held.push(frame);
      return false;
    }
    return apply(this.#members, frame);
  }

  /** The answer to `presence`: the list is replaced by it, then the held pushes are applied. */
  loaded(members: readonly Member[]): void {
    this.#members.clear();
    for (const member of members) this.#members.set(member.client, member);
    this.unread();
  }

  /** The read was refused (e.g. presence is not enabled): the pushes alone keep the list from now on. Also the end of loaded(). */
  unread(): void {
    for (const frame of this.#held ?? []) apply(this.#members, frame);
    this.#held = undefined;
  }
}

/** A leave of a client not listed changes nothing (it may have joined before this client could hear it). */
function apply(members: Map<string, Member>, frame: JoinPush | LeavePush): boolean {
  if (frame.op === "join") {
    members.set(frame.member.client, frame.member);
    return true;
  }
  return members.delete(frame.member.client);
}
