// Redis Cluster: a publication with history is delivered and acknowledged only
// once a replica of its master has it (WAIT). Replication is asynchronous, so a
// master SIGKILLed a moment after an append may take the append with it; had
// the append been delivered already, the promoted replica would number the next
// message with the same offset, and subscribers that saw the lost one would drop
// the new one as a duplicate. Delivered only once replicated, nothing a
// subscriber saw or a publisher was told "ok" for is lost in a failover, and
// recovery fills what was published meanwhile. Which replicas to wait for is the
// cluster's view (CLUSTER REPLICAS on the master), not the replication link's:
// a replica whose link just dropped is still waited for (appends are refused as
// `unavailable` until it is back or the cluster declares it failed), while a
// master with no replica the cluster deems alive (its replica was promoted and
// nothing replaces it yet, or it was declared failed) has nothing to wait for
// and acknowledges as one Redis does.
//
// WAIT blocks the connection it is sent on until the replicas acknowledge, so
// one WAIT at a time goes to each master, covering every append answered on
// that connection before it was sent (a group commit): appends answered while a
// WAIT is out share the next one.

import { ProtocolError } from "crier-protocol";
import type { Cluster, Redis } from "ioredis";

interface Waiter {
  resolve(): void;
  reject(error: Error): void;
}

/** One master's appends waiting for a replica: those for the WAIT in flight, and those for the next. */
interface Master {
  next: Waiter[];
  inFlight: boolean;
}

export class ReplicaBarrier {
  private readonly cluster: Cluster;
  private readonly timeoutMs: number;
  private readonly masters = new Map<string, Master>();
  /** Each master's node id (CLUSTER MYID), by "host:port". */
  private readonly ids = new Map<string, string>();

  /** `timeoutMs`: how long a WAIT may take before its appends are refused as `unavailable`. */
  constructor(cluster: Cluster, timeoutMs: number) {
    this.cluster = cluster;
    this.timeoutMs = timeoutMs;
  }

  /**
   * Resolves once what the master of `slot` answered on this client so far is
   * on one of its replicas, at once when it has none; rejects with
   * `unavailable` when no replica acknowledged in time or the master is gone.
   */
  confirm(slot: number): Promise<void> {
    const owner = this.cluster.slots[slot]?.[0];
    if (owner === undefined) return Promise.reject(new ProtocolError("unavailable", `no master serves slot ${slot}`));
    let master = this.masters.get(owner);
    if (master === undefined) {
      master = { next: [], inFlight: false };
      this.masters.set(owner, master);
    }
    const waiting = master;
    return new Promise((resolve, reject) => {
      waiting.next.push({ resolve, reject });
      // After the appends answered in the same read have queued too, so they share this WAIT.
      if (!waiting.inFlight) queueMicrotask(() => this.flush(owner, waiting));
    });
  }

  private flush(owner: string, master: Master): void {
    if (master.inFlight || master.next.length === 0) return;
    const batch = master.next.splice(0);
    master.inFlight = true;
    const settle = (error: Error | undefined): void => {
      for (const waiter of batch) {
        if (error === undefined) waiter.resolve();
        else waiter.reject(error);
      }
      master.inFlight = false;
      if (master.next.length > 0) this.flush(owner, master);
      else this.masters.delete(owner);
    };
    const node = this.node(owner);
    if (node === undefined) {
      settle(new ProtocolError("unavailable", `the master ${owner} is not connected`));
      return;
    }
    this.replicated(owner, node).then(settle, (error: unknown) => {
      this.ids.delete(owner);
      const why = error instanceof Error ? error.message : String(error);
      settle(new ProtocolError("unavailable", `the replication of ${owner} could not be confirmed: ${why}`));
    });
  }

  /** Undefined once a replica of `owner` has what `node` (its connection) wrote, or when it has none alive; else why not. */
  private async replicated(owner: string, node: Redis): Promise<Error | undefined> {
    if ((await this.replicasOf(owner, node)) === 0) return undefined;
    const acknowledged = await node.wait(1, this.timeoutMs);
    if (acknowledged >= 1) return undefined;
    return new ProtocolError("unavailable", `no replica of ${owner} confirmed the write within ${this.timeoutMs} ms`);
  }

  /**
   * How many replicas of `owner` to wait for: those the cluster does not deem
   * failed (CLUSTER REPLICAS, as the master sees it) and that are not in a full
   * sync (INFO replication).
   */
  private async replicasOf(owner: string, node: Redis): Promise<number> {
    let id = this.ids.get(owner);
    if (id === undefined) {
      id = String(await node.cluster("MYID"));
      this.ids.set(owner, id);
    }
    const [reply, info] = await Promise.all([
      node.cluster("REPLICAS", id) as Promise<unknown>,
      node.info("replication"),
    ]);
    const syncing = new Set<string>();
    // "slave0:ip=127.0.0.1,port=7004,state=online,offset=…,lag=0"; a full sync is wait_bgsave or send_bulk.
    for (const [, ip, port, state] of info.matchAll(/^slave\d+:ip=([^,]+),port=(\d+),state=(\w+)/gm)) {
      if (state !== "online") syncing.add(`${ip}:${port}`);
    }
    const lines = Array.isArray(reply) ? reply.map(String) : String(reply).split("\n");
    // A line per replica, as in CLUSTER NODES: "id host:port@bus flags master …".
    return lines.filter((line) => {
      const [, address = "", flags = ""] = line.split(" ");
      return line.trim() !== "" && !flags.split(",").includes("fail") && !syncing.has(address.split("@")[0] ?? "");
    }).length;
  }

  /** The cluster client's own connection to `owner` ("host:port"): the one the appends went over. */
  private node(owner: string): Redis | undefined {
    return this.cluster.nodes("master").find((node) => `${node.options.host}:${node.options.port}` === owner);
  }
}
