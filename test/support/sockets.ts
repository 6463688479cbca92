// The local TCP ports of a process's sockets, read from /proc, for fault tests
// that must cut one instance's connections to Redis and not another's (every
// instance names its connections alike, so Redis alone cannot tell them apart).

import { readdir, readFile, readlink } from "node:fs/promises";

export async function localPorts(pid: number): Promise<Set<number>> {
  const inodes = new Set<string>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    // A descriptor may close while it is read: then it is no socket of ours any more.
    const link = await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "");
    const inode = /^socket:\[(\d+)\]$/.exec(link)?.[1];
    if (inode !== undefined) inodes.add(inode);
  }
  const ports = new Set<number>();
  for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const text = await readFile(table, "utf8").catch(() => "");
    for (const line of text.split("\n").slice(1)) {
      // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
      const columns = line.trim().split(/\s+/);
      const port = columns[1]?.split(":")[1];
      if (port !== undefined && columns[9] !== undefined && inodes.has(columns[9]))
        ports.add(Number.parseInt(port, 16));
    }
  }
  return ports;
}
