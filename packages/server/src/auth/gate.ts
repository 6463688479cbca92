// Who a connection is and what it may do: the `authenticate` and `authorize`
// hooks first, then JWT verification, anonymous access and the namespace
// policies. The node's sessions ask here; nothing here knows of sockets.

import type { IncomingMessage } from "node:http";
import { type ConnectCommand, ProtocolError } from "crier-protocol";
import type { SessionView } from "../session/host.js";
import { ANONYMOUS, type Identity } from "./identity.js";
import type { TokenVerifier } from "./jwt.js";
import type { RoomAction, RoomPolicy } from "./policy.js";

type MaybePromise<T> = T | Promise<T>;

export interface CrierHooks {
  /**
   * Decides who a connection is. Return an Identity to accept, throw a
   * ProtocolError("unauthorized") (or return null) to refuse, or return
   * undefined to fall back to JWT verification / anonymous access.
   */
  authenticate?(request: IncomingMessage, connect: ConnectCommand): MaybePromise<Identity | null | undefined>;
  /**
   * Decides whether a connection may subscribe or publish to a room. Return
   * true or false to decide, or undefined to apply the namespace's policy.
   */
  authorize?(session: SessionView, room: string, action: RoomAction): MaybePromise<boolean | undefined>;
}

export class AuthGate {
  private readonly hooks: CrierHooks;
  private readonly verifier: TokenVerifier | undefined;
  private readonly policy: RoomPolicy;
  readonly allowAnonymous: boolean;

  constructor(hooks: CrierHooks, verifier: TokenVerifier | undefined, allowAnonymous: boolean, policy: RoomPolicy) {
    this.hooks = hooks;
    this.verifier = verifier;
    this.allowAnonymous = allowAnonymous;
    this.policy = policy;
  }

  /** Resolves the identity for a `connect`, or throws ProtocolError("unauthorized"). */
  async authenticate(request: IncomingMessage, command: ConnectCommand): Promise<Identity> {
    const hooked = await this.hooks.authenticate?.(request, command);
    if (hooked === null) throw new ProtocolError("unauthorized", "connection refused by the authenticate hook");
    if (hooked !== undefined) return hooked;
    if (command.token !== undefined && this.verifier !== undefined) return this.verifier.verify(command.token);
    if (command.token !== undefined && !this.allowAnonymous) {
      throw new ProtocolError("unauthorized", "this server has no key to verify tokens with");
    }
    if (this.allowAnonymous) return ANONYMOUS;
    throw new ProtocolError("unauthorized", 'a token is required: send connect with "token"');
  }

  /** Verifies a refreshed token for the same user. */
  async refresh(session: SessionView, token: string): Promise<Identity> {
    if (this.verifier === undefined) {
      throw new ProtocolError("bad_request", "this server has no key to verify tokens with");
    }
    const identity = await this.verifier.verify(token);
    if (identity.user !== session.user) {
      throw new ProtocolError("forbidden", "the refreshed token is for another user: reconnect instead");
    }
    return identity;
  }

  /** Throws ProtocolError("forbidden") when `session` may not do `action` in `room`. */
  async authorize(session: SessionView, room: string, action: RoomAction): Promise<void> {
    const decision = await this.hooks.authorize?.(session, room, action);
    if (decision === true) return;
    if (decision === false) throw new ProtocolError("forbidden", `not allowed to ${action} in '${room}'`);
    this.policy.check(session.identity, room, action, session.rooms.has(room));
  }
}
