// Round trips on one Redis connection that are settled at once when it drops,
// for the broker's publish connection and each listening connection
// (subscriptions.ts): the caller learns `unavailable` without waiting for the
// command timeout.

import type { Logger } from "pino";
import { redisFailure } from "../redis/connection.js";

/**
 * Round trips on one connection that reject at once when it drops (settle),
 * rather than leave their callers to ioredis's queue handling or the command
 * timeout; failures become ProtocolError (see redisFailure), bugs are logged.
 */
export class RoundTrips {
  private readonly pending = new Set<(err: Error) => void>();
  private readonly log: Logger;

  constructor(log: Logger) {
    this.log = log;
  }

  run<T>(command: Promise<T>, what: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const fail = (err: Error): void => {
        this.pending.delete(fail);
        const { error, bug } = redisFailure(what, err);
        if (bug) this.log.error({ err }, `${what} failed`);
        reject(error);
      };
      this.pending.add(fail);
      command.then(
        (value) => {
          this.pending.delete(fail);
          resolve(value);
        },
        (err: unknown) => fail(err instanceof Error ? err : new Error(String(err))),
      );
    });
  }

  settle(why: string): void {
    const pending = [...this.pending];
    this.pending.clear();
    for (const fail of pending) fail(new Error(why));
  }
}
