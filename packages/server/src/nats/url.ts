// NATS URLs crier accepts: `nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,HOST:PORT...]`,
// or `tls://` for a TLS connection. Parsed here, without the client, so that
// configuration validation can check one before anything connects.

export interface NatsTarget {
  /** HOST:PORT of each seed server, in the order given. */
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
  /** tls:// was asked for. */
  tls: boolean;
}

const SHAPE = "expected nats://[USER:PASSWORD@|TOKEN@]HOST:PORT[,HOST:PORT...] (or tls://...)";
const SCHEME = /^(nats|tls):\/\//;

/** Parses a NATS URL; throws an Error saying what is wrong and what the URL should look like. */
export function parseNatsUrl(url: string): NatsTarget {
  const scheme = SCHEME.exec(url);
  if (scheme === null) throw new Error(`not a nats:// or tls:// URL; ${SHAPE}`);
  let rest = url.slice(scheme[0].length);
  const at = rest.lastIndexOf("@");
  const auth = at < 0 ? "" : rest.slice(0, at);
  rest = at < 0 ? rest : rest.slice(at + 1);
  const servers = rest.split(",").map((entry) => {
    // Later servers may repeat the scheme: nats://a:4222,nats://b:4222.
    const bare = entry.replace(SCHEME, "");
    const colon = bare.lastIndexOf(":");
    const hasPort = colon >= 0 && !bare.endsWith("]");
    const host = hasPort ? bare.slice(0, colon) : bare;
    const port = hasPort ? Number(bare.slice(colon + 1)) : 4222;
    if (host === "" || /[\s/?#@]/.test(host) || !Number.isInteger(port) || port < 1 || port > 65535) {
      throw new Error(`server '${entry}' is not HOST:PORT; ${SHAPE}`);
    }
    return `${host}:${port}`;
  });
  const target: NatsTarget = { servers, tls: scheme[1] === "tls" };
  if (auth !== "") {
    const colon = auth.indexOf(":");
    if (colon < 0) target.token = decodeURIComponent(auth);
    else {
      target.user = decodeURIComponent(auth.slice(0, colon));
      target.pass = decodeURIComponent(auth.slice(colon + 1));
    }
  }
  return target;
}

/** What is wrong with a NATS URL, or undefined when it parses. */
export function natsUrlProblem(url: string): string | undefined {
  try {
    parseNatsUrl(url);
    return undefined;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

/** The URL without credentials, for logs and error messages. */
export function redactNatsUrl(url: string): string {
  try {
    const target = parseNatsUrl(url);
    return `${target.tls ? "tls" : "nats"}://${target.servers.join(",")}`;
  } catch {
    return "(an invalid NATS URL)";
  }
}
