// Redis Cluster's key (and shard channel) to hash slot mapping: CRC16-XMODEM
// of the key, or of its hash tag (the text between the first "{" and the next
// "}", when not empty), modulo 16384. Computed here so a shard channel is
// routed to its master without asking Redis (CLUSTER KEYSLOT) every time.

const TABLE = (() => {
  const table = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let crc = i << 8;
    for (let bit = 0; bit < 8; bit++) crc = crc & 0x8000 ? ((crc << 1) ^ 0x1021) & 0xffff : (crc << 1) & 0xffff;
    table[i] = crc;
  }
  return table;
})();

export const SLOTS = 16384;

/** The hash slot of `key` (a key or a shard channel), as CLUSTER KEYSLOT computes it. */
export function keySlot(key: string): number {
  let bytes = Buffer.from(key, "utf8");
  const open = bytes.indexOf(0x7b);
  if (open >= 0) {
    const close = bytes.indexOf(0x7d, open + 1);
    if (close > open + 1) bytes = bytes.subarray(open + 1, close);
  }
  let crc = 0;
  for (const byte of bytes) crc = ((crc << 8) & 0xffff) ^ (TABLE[((crc >> 8) ^ byte) & 0xff] ?? 0);
  return crc % SLOTS;
}
