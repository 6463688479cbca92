// Steps run one at a time per key, in call order, each after the one before
// settled (whether it resolved or rejected): a room's appends, a user's count,
// a member's presence entry. A key with nothing pending holds no memory.

export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, step: () => Promise<T>): Promise<T> {
    const previous = this.tails.get(key) ?? Promise.resolve();
    const next = previous.then(step, step);
    this.tails.set(key, next);
    const forget = (): void => {
      if (this.tails.get(key) === next) this.tails.delete(key);
    };
    next.then(forget, forget);
    return next;
  }
}
