// Collects what arrives (deliveries, envelopes, messages) and lets a test wait
// for a count, by event, with a deadline whose error shows what did arrive.

export class Collector<T> {
  readonly items: T[] = [];
  private waiter: { count: number; wake: () => void } | undefined;
  private readonly describe: (items: readonly T[]) => string;

  constructor(describe: (items: readonly T[]) => string = (items) => String(items.length)) {
    this.describe = describe;
  }

  push(item: T): void {
    this.items.push(item);
    if (this.waiter !== undefined && this.items.length >= this.waiter.count) this.waiter.wake();
  }

  async waitFor(count: number, timeoutMs = 3000): Promise<void> {
    if (this.items.length >= count) return;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new Error(`expected ${count} deliveries within ${timeoutMs} ms, got ${this.describe(this.items)}`));
      }, timeoutMs);
      this.waiter = {
        count,
        wake: () => {
          clearTimeout(timer);
          this.waiter = undefined;
          resolve();
        },
      };
    });
  }
}
