// What the Redis and NATS memberships share: starting once, a heartbeat on a
// timer that skips a tick rather than pile up behind a slow engine, one log
// line per outage and per recovery, the rejoin listeners told when this
// instance had dropped out of the cluster, and an idempotent close that stops
// the heartbeat before the engine's own withdrawal.

import type { Logger } from "pino";
import { messageOf } from "../describe-error.js";
import type { NodeInfo } from "./membership.js";

export abstract class HeartbeatMembership {
  protected info: (() => NodeInfo) | undefined;
  /** The id this instance's entry was last written under. */
  protected announcedId: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;
  private failing = false;
  private readonly rejoinListeners: Array<() => void> = [];
  private closing: Promise<void> | undefined;

  /** `engine` names the backplane in log lines ("Redis", "NATS"). */
  protected constructor(
    private readonly engine: string,
    private readonly heartbeatMs: number,
  ) {}

  protected abstract readonly log: Logger;
  /** Writes this instance's entry; resolves whether it was still there (false: this instance had dropped out). */
  protected abstract write(entry: NodeInfo): Promise<boolean>;
  /** Removes this instance's entry (a clean shutdown) and closes the engine's connection. */
  protected abstract withdraw(): Promise<void>;

  /** Takes `info`, once; throws when called again or after close(). */
  protected begin(info: () => NodeInfo): void {
    if (this.info !== undefined || this.closing) throw new Error("membership: start() called twice or after close()");
    this.info = info;
  }

  /** Starts the timer, once the first heartbeat went through. */
  protected beatEvery(): void {
    this.timer = setInterval(() => this.beat(), this.heartbeatMs);
    this.timer.unref();
  }

  /** A heartbeat now, unless one is under way or the heartbeat is stopped (a reconnect announces at once). */
  protected beat(): void {
    if (this.timer === undefined || this.beating !== undefined) return;
    this.beating = this.heartbeat(false).finally(() => (this.beating = undefined));
  }

  onRejoin(listener: () => void): void {
    this.rejoinListeners.push(listener);
  }

  close(): Promise<void> {
    this.closing ??= this.stopAndWithdraw();
    return this.closing;
  }

  /** Stops the heartbeat without withdrawing the entry, as a crash would. */
  protected stopHeartbeat(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Called when a heartbeat failed, before the failure is logged (NATS reopens its bucket next time). */
  protected onBeatFailed(): void {}

  /** One heartbeat: the first one's failure is thrown (start fails); later ones are logged once per outage. */
  protected async heartbeat(first: boolean): Promise<void> {
    const info = this.info;
    if (info === undefined) return;
    const entry: NodeInfo = { ...info(), updatedAt: Date.now() };
    try {
      const existed = await this.write(entry);
      this.announcedId = entry.id;
      if (this.failing) this.log.info(`heartbeats reach ${this.engine} again`);
      this.failing = false;
      if (!first && !existed) {
        this.log.warn(
          `this node had dropped out of the cluster (stalled, or ${this.engine} lost its entry): announced again`,
        );
        for (const listener of this.rejoinListeners) listener();
      }
    } catch (err) {
      if (first) throw err;
      this.onBeatFailed();
      // Logged once per outage; the node drops out of the list if it lasts past the timeout.
      if (!this.failing) this.log.warn({ err: messageOf(err) }, "heartbeat failed");
      this.failing = true;
    }
  }

  private async stopAndWithdraw(): Promise<void> {
    this.stopHeartbeat();
    await this.beating;
    await this.withdraw();
  }
}
