// Calls to crier's HTTP API with the key the operator typed: kept in this
// tab's sessionStorage only and sent as a Bearer token, never in a URL.

const STORE = "crier-dashboard-key";

/** The server refused the key (401): the page asks for it again. */
export class KeyRefused extends Error {}

export function storedKey(): string | null {
  return sessionStorage.getItem(STORE);
}

export function storeKey(key: string): void {
  sessionStorage.setItem(STORE, key);
}

export function forgetKey(): void {
  sessionStorage.removeItem(STORE);
}

/** GET (no body) or POST (a JSON body) to an /api/ path; resolves with the reply's JSON, throws its error message. */
export async function call<T>(path: string, body?: unknown): Promise<T> {
  const key = storedKey();
  if (key === null) throw new KeyRefused("no key");
  const init: RequestInit = { headers: { Authorization: `Bearer ${key}` }, cache: "no-store" };
  if (body !== undefined) {
    init.method = "POST";
    init.headers = { Authorization: `Bearer ${key}`, "Content-Type": "application/json" };
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const reply = (await response.json().catch(() => ({}))) as { error?: { message?: string } };
  if (response.status === 401) throw new KeyRefused(reply.error?.message ?? "unauthorized");
  if (!response.ok) throw new Error(reply.error?.message ?? `HTTP ${response.status}`);
  return reply as T;
}

/** `path?name=value&…` with the values encoded. */
export function query(path: string, params: Record<string, string | number>): string {
  return `${path}?${new URLSearchParams(Object.entries(params).map(([k, v]) => [k, String(v)])).toString()}`;
}
