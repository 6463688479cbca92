// Redis URLs crier accepts beyond ioredis's own: redis+sentinel://, for a
// master found through Redis Sentinel, and redis+cluster:// (rediss+cluster://
// with TLS), for Redis Cluster. Parsed here, without ioredis, so that
// configuration validation can check one before anything connects.

/** `redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB][?sentinelPassword=...]` */
export const SENTINEL_SCHEME = "redis+sentinel:";

export interface SentinelTarget {
  sentinels: { host: string; port: number }[];
  /** The master's name, as the sentinels monitor it. */
  name: string;
  /** AUTH for the master and replicas. */
  password?: string;
  username?: string;
  db?: number;
  /** AUTH for the sentinels themselves. */
  sentinelPassword?: string;
}

/**
 * Parses a redis+sentinel:// URL; throws an Error saying what is wrong and
 * what the URL should look like.
 */
export function parseSentinelUrl(url: string): SentinelTarget {
  const shape = "expected redis+sentinel://[:PASSWORD@]HOST:PORT[,HOST:PORT...]/MASTER_NAME[/DB]";
  if (!url.startsWith(`${SENTINEL_SCHEME}//`)) throw new Error(`not a ${SENTINEL_SCHEME}// URL; ${shape}`);
  let rest = url.slice(SENTINEL_SCHEME.length + 2);
  const query = rest.indexOf("?");
  const params = new URLSearchParams(query < 0 ? "" : rest.slice(query + 1));
  if (query >= 0) rest = rest.slice(0, query);
  const at = rest.lastIndexOf("@");
  const auth = at < 0 ? "" : rest.slice(0, at);
  rest = at < 0 ? rest : rest.slice(at + 1);
  const slash = rest.indexOf("/");
  const hostList = slash < 0 ? rest : rest.slice(0, slash);
  const [name = "", dbText, ...extra] = slash < 0 ? [] : rest.slice(slash + 1).split("/");
  if (name === "" || extra.length > 0) throw new Error(`no master name after the sentinels; ${shape}`);
  const sentinels = parseHostList(hostList, 26379, "sentinel", shape);
  const target: SentinelTarget = { sentinels, name: decodeURIComponent(name) };
  if (dbText !== undefined && dbText !== "") {
    const db = Number(dbText);
    if (!Number.isInteger(db) || db < 0) throw new Error(`database '${dbText}' is not a whole number; ${shape}`);
    target.db = db;
  }
  Object.assign(target, parseAuth(auth));
  const sentinelPassword = params.get("sentinelPassword");
  if (sentinelPassword !== null && sentinelPassword !== "") target.sentinelPassword = sentinelPassword;
  return target;
}

/** `redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...]`, and `rediss+cluster://` for TLS. */
export const CLUSTER_SCHEMES = ["redis+cluster:", "rediss+cluster:"] as const;

export interface ClusterTarget {
  /** Startup nodes: any reachable one tells ioredis the rest of the cluster. */
  nodes: { host: string; port: number }[];
  tls: boolean;
  password?: string;
  username?: string;
}

/** Whether `url` names a Redis Cluster (redis+cluster:// or rediss+cluster://). */
export function isClusterUrl(url: string): boolean {
  return CLUSTER_SCHEMES.some((scheme) => url.startsWith(`${scheme}//`));
}

/**
 * Parses a redis+cluster:// or rediss+cluster:// URL; throws an Error saying
 * what is wrong and what the URL should look like.
 */
export function parseClusterUrl(url: string): ClusterTarget {
  const shape = "expected redis+cluster://[USER:PASSWORD@]HOST:PORT[,HOST:PORT...] (rediss+cluster:// for TLS)";
  const scheme = CLUSTER_SCHEMES.find((candidate) => url.startsWith(`${candidate}//`));
  if (scheme === undefined) throw new Error(`not a redis+cluster:// URL; ${shape}`);
  let rest = url.slice(scheme.length + 2);
  if (/[/?#]/.test(rest.replace(/\/$/, ""))) {
    throw new Error(`a cluster URL has no database, path or query (Redis Cluster has database 0 only); ${shape}`);
  }
  rest = rest.replace(/\/$/, "");
  const at = rest.lastIndexOf("@");
  const target: ClusterTarget = {
    nodes: parseHostList(at < 0 ? rest : rest.slice(at + 1), 6379, "node", shape),
    tls: scheme === "rediss+cluster:",
  };
  Object.assign(target, parseAuth(at < 0 ? "" : rest.slice(0, at)));
  return target;
}

/** `HOST[:PORT],...` (an IPv6 address in brackets); throws naming the entry that is not one. */
function parseHostList(
  list: string,
  defaultPort: number,
  what: string,
  shape: string,
): { host: string; port: number }[] {
  return list.split(",").map((entry) => {
    const colon = entry.lastIndexOf(":");
    const named = colon < 0 || entry.endsWith("]") ? entry : entry.slice(0, colon);
    // [::1]:6379: the brackets only delimit an IPv6 address.
    const host = named.startsWith("[") && named.endsWith("]") ? named.slice(1, -1) : named;
    const port = colon < 0 || entry.endsWith("]") ? defaultPort : Number(entry.slice(colon + 1));
    if (host === "" || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`${what} '${entry}' is not HOST:PORT; ${shape}`);
    }
    return { host, port };
  });
}

/** `[USER:]PASSWORD`, percent-decoded; empty parts left out. */
function parseAuth(auth: string): { username?: string; password?: string } {
  if (auth === "") return {};
  const colon = auth.indexOf(":");
  const username = decodeURIComponent(colon < 0 ? "" : auth.slice(0, colon));
  const password = decodeURIComponent(colon < 0 ? auth : auth.slice(colon + 1));
  return { ...(username === "" ? {} : { username }), ...(password === "" ? {} : { password }) };
}

/** Why `url` is not a Redis URL crier can use, or undefined when it is. */
export function redisUrlProblem(url: string): string | undefined {
  const parse = url.startsWith(SENTINEL_SCHEME) ? parseSentinelUrl : isClusterUrl(url) ? parseClusterUrl : undefined;
  if (parse !== undefined) {
    try {
      parse(url);
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  }
  let protocol = "";
  try {
    protocol = new URL(url).protocol;
  } catch {
    // not a URL at all
  }
  return protocol === "redis:" || protocol === "rediss:"
    ? undefined
    : "expected redis://HOST:PORT, rediss://HOST:PORT, redis+sentinel://HOST:PORT[,HOST:PORT...]/MASTER_NAME or redis+cluster://HOST:PORT[,HOST:PORT...]";
}
