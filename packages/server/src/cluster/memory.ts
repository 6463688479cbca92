// Membership of a cluster of one (no backplane): the only node is this one.

import type { Membership, NodeInfo } from "./membership.js";

export class MemoryMembership implements Membership {
  private info: (() => NodeInfo) | undefined;

  async start(info: () => NodeInfo): Promise<void> {
    this.info = info;
  }

  async nodes(): Promise<NodeInfo[]> {
    if (this.info === undefined) return [];
    return [{ ...this.info(), updatedAt: Date.now() }];
  }

  onRejoin(_listener: () => void): void {
    // A cluster of one never drops this node.
  }

  async close(): Promise<void> {
    this.info = undefined;
  }
}
