// Test support: things arriving over time (frames, messages, connections) that a test
// awaits one by one, instead of sleeping and hoping they have arrived.

export class Inbox<T> {
  readonly #unread: T[] = [];
  readonly #waiters: { match: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  push(item: T): void {
    const index = this.#waiters.findIndex((waiter) => waiter.match(item));
    const waiter = index === -1 ? undefined : this.#waiters.splice(index, 1)[0];
    if (waiter !== undefined) waiter.resolve(item);
    else this.#unread.push(item);
  }

  /** The first unread item that matches (any item by default), now or when it arrives; it counts as read. */
  next(match: (item: T) => boolean = () => true): Promise<T> {
    const index = this.#unread.findIndex(match);
    if (index !== -1) {
      const [item] = this.#unread.splice(index, 1);
      if (item !== undefined) return Promise.resolve(item);
    }
    return new Promise((resolve) => this.#waiters.push({ match, resolve }));
  }

  /** Items not yet read. */
  get unread(): readonly T[] {
    return this.#unread;
  }
}
