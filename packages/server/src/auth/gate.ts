// Who a connection is and what it may do: the `authenticate` and `authorize`
// hooks first, then the backend proxy where one is configured, then JWT
// verification, anonymous access and the namespace policies. The node's
// sessions ask here; nothing here knows of sockets.

import type { IncomingMessage } from "node:http";
import { type ConnectCommand, type JsonValue, ProtocolError } from "crier-protocol";
import type { BackendProxy, ConnectContext } from "../proxy/proxy.js";
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
  private readonly proxy: BackendProxy | undefined;
  readonly allowAnonymous: boolean;

  constructor(
    hooks: CrierHooks,
    verifier: TokenVerifier | undefined,
    allowAnonymous: boolean,
    policy: RoomPolicy,
    proxy?: BackendProxy,
  ) {
    this.hooks = hooks;
    this.verifier = verifier;
    this.allowAnonymous = allowAnonymous;
    this.policy = policy;
    this.proxy = proxy;
  }

  /** The headers of `request` that every proxy call for its connection forwards (none without a proxy). */
  forwardedHeaders(request: IncomingMessage): Readonly<Record<string, string>> {
    return this.proxy?.forwardedHeaders(request) ?? {};
  }

  /** Resolves the identity for a `connect`, or throws ProtocolError("unauthorized"). */
  async authenticate(request: IncomingMessage, command: ConnectCommand, context: ConnectContext): Promise<Identity> {
    const hooked = await this.hooks.authenticate?.(request, command);
    if (hooked === null) throw new ProtocolError("unauthorized", "connection refused by the authenticate hook");
    if (hooked !== undefined) return hooked;
    const proxy = this.proxy;
    if (proxy?.has("connect")) {
      // A token this server can verify is the identity, unless every connect goes to the backend.
      const verifiable = command.token !== undefined && this.verifier !== undefined && !proxy.connectWithToken;
      if (!verifiable) return proxy.connect(context, command);
    }
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
    if (action === "subscribe" && this.proxy?.decidesSubscribe(room)) {
      await this.proxy.subscribe(session, room, session.identity.info);
      return;
    }
    this.policy.check(session.identity, room, action, session.rooms.has(room));
  }

  /**
   * Whether `session` may publish `data` to `room`, and what to publish: the
   * data as sent, or what a publish proxy put in its place.
   */
  async authorizePublish(session: SessionView, room: string, data: JsonValue): Promise<JsonValue> {
    const decision = await this.hooks.authorize?.(session, room, "publish");
    if (decision === false) throw new ProtocolError("forbidden", `not allowed to publish in '${room}'`);
    if (this.proxy?.decidesPublish(room)) return this.proxy.publish(session, room, data);
    if (decision !== true) this.policy.check(session.identity, room, "publish", session.rooms.has(room));
    return data;
  }
}
