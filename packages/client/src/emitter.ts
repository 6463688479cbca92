// A tiny typed event emitter, so the SDK needs no dependency in browsers or Node.
// A listener that throws must not break the client's frame loop half way through a
// frame: its error is reported on its own (rethrown on a microtask by default, where
// the host shows it: the console in browsers, 'uncaughtException' in Node) and the
// other listeners still run.

export type Listener<T> = (payload: T) => void;

const rethrowLater = (error: unknown): void => {
  queueMicrotask(() => {
    throw error;
  });
};

export class Emitter<Events extends object> {
  #listeners: { [K in keyof Events]?: Set<Listener<Events[K]>> } = {};
  readonly #reportError: (error: unknown) => void;

  constructor(reportError: (error: unknown) => void = rethrowLater) {
    this.#reportError = reportError;
  }

  /** Adds a listener; returns a function that removes it. */
  on<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    this.#listeners[event] ??= new Set();
    this.#listeners[event].add(listener);
    return () => this.off(event, listener);
  }

  /** Adds a listener for the next event only; returns a function that removes it before then. */
  once<K extends keyof Events>(event: K, listener: Listener<Events[K]>): () => void {
    const remove = this.on(event, (payload) => {
      remove();
      listener(payload);
    });
    return remove;
  }

  off<K extends keyof Events>(event: K, listener: Listener<Events[K]>): void {
    this.#listeners[event]?.delete(listener);
  }

  listenerCount<K extends keyof Events>(event: K): number {
    return this.#listeners[event]?.size ?? 0;
  }

  protected emit<K extends keyof Events>(event: K, payload: Events[K]): void {
    // A copy: a listener may add or remove listeners while we iterate.
    for (const listener of [...(this.#listeners[event] ?? [])]) {
      try {
        listener(payload);
      } catch (error) {
        this.#reportError(error);
      }
    }
  }
}
