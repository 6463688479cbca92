// A minimal WebSocket client on net.Socket (tls.TLSSocket for wss) for the
// load generator: HTTP upgrade, masked client frames, and incremental parsing of the server's
// unmasked frames straight out of a read buffer shared by every socket of a
// thread. A frame carrying a bench payload is reported to the sink as numbers
// (tag, send time); nothing is allocated per frame unless it straddles two
// reads (then it is copied into this connection's reusable pending buffer).
// Other frames (replies, pings) are rare and handed over as text.

import { randomBytes } from "node:crypto";
import { connect, isIP, type Socket } from "node:net";
import { type ConnectionOptions, connect as connectTls } from "node:tls";
import { findMarker, hasPayloadHeader, nowMicros, readSentAt, readTag } from "./payload.js";

export interface PayloadSink {
  /** A frame with a bench payload: its window tag byte and send time, received at `now` (both µs). */
  payload(tag: number, sentAt: number, now: number): void;
}

export interface RawWsOptions {
  host: string;
  port: number;
  /** wss: TLS, verified against the host name. */
  tls?: boolean;
  /** Request path with query, e.g. "/ws". */
  path: string;
  /** Source address to bind (127.0.0.x), to get past one address's ephemeral ports. */
  localAddress?: string;
  /** Read buffer shared by the sockets of one thread: each read is parsed before the next one. */
  readBuffer: Buffer;
  sink: PayloadSink;
  timeoutMs: number;
}

const OP_CONTINUATION = 0x0;
const OP_TEXT = 0x1;
const OP_BINARY = 0x2;
const OP_CLOSE = 0x8;
const OP_PING = 0x9;
const CLOSE_NORMAL = 1000;
const HEADER_END = Buffer.from("\r\n\r\n");
/** Longest frame header a server sends: 2 bytes, 8 of length (servers do not mask). */
const MAX_HEADER = 10;

/**
 * Encodes a client frame. The mask key is zero: every key is valid on the
 * wire (the server unmasks whatever it gets), and XOR with zero spares the
 * generator, which shares the CPU with the servers it measures, a pass over
 * each payload.
 */
export function encodeClientFrame(data: string | Buffer, opcode = OP_TEXT): Buffer {
  const length = typeof data === "string" ? Buffer.byteLength(data) : data.length;
  const header = length < 126 ? 2 : length < 65_536 ? 4 : 10;
  const frame = Buffer.allocUnsafe(header + 4 + length);
  frame[0] = 0x80 | opcode;
  if (length < 126) {
    frame[1] = 0x80 | length;
  } else if (length < 65_536) {
    frame[1] = 0x80 | 126;
    frame.writeUInt16BE(length, 2);
  } else {
    frame[1] = 0x80 | 127;
    frame.writeUInt32BE(0, 2);
    frame.writeUInt32BE(length, 6);
  }
  frame.writeUInt32BE(0, header);
  if (typeof data === "string") frame.write(data, header + 4, length, "utf8");
  else data.copy(frame, header + 4);
  return frame;
}

/** Total length (header + payload) of the frame at buf[start], or -1 when its header is not all there yet. */
function frameLength(buf: Buffer, start: number, end: number): number {
  if (end - start < 2) return -1;
  const second = buf[start + 1] ?? 0;
  let length = second & 0x7f;
  let header = 2;
  if (length === 126) {
    if (end - start < 4) return -1;
    length = buf.readUInt16BE(start + 2);
    header = 4;
  } else if (length === 127) {
    if (end - start < 10) return -1;
    length = buf.readUInt32BE(start + 2) * 2 ** 32 + buf.readUInt32BE(start + 6);
    header = 10;
  }
  if ((second & 0x80) !== 0) header += 4;
  return header + length;
}

export class RawWs {
  /** Text of frames without a bench payload (replies, pings, errors). */
  onControl: (text: string) => void = () => {};
  /** The connection ended; `code` is the server's close code, 1006 without one. */
  onClose: (code: number) => void = () => {};
  /** Close code the server sent, 0 while none. */
  closeCode = 0;

  private readonly options: RawWsOptions;
  private socket: Socket | undefined;
  private pending: Buffer | undefined;
  private pendingLength = 0;
  private upgraded = false;
  private closing = false;
  private settle: ((error?: Error) => void) | undefined;

  constructor(options: RawWsOptions) {
    this.options = options;
  }

  /** Connects and upgrades; resolves once the server answered 101. */
  open(): Promise<void> {
    const { host, port, tls, path, localAddress, readBuffer, timeoutMs } = this.options;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => this.settle?.(new Error(`no upgrade within ${timeoutMs} ms`)), timeoutMs);
      this.settle = (error) => {
        this.settle = undefined;
        clearTimeout(timer);
        if (error === undefined) {
          resolve();
          return;
        }
        this.destroy();
        reject(error);
      };
      const onread = {
        buffer: readBuffer,
        callback: (bytes: number, buffer: Uint8Array) => {
          this.feed(buffer as Buffer, bytes);
          return true;
        },
      };
      const where = { host, port, ...(localAddress === undefined ? {} : { localAddress }) };
      // tls.connect takes onread too (Node 15+, not in @types/node): decrypted bytes land in the shared buffer.
      const secure: ConnectionOptions & { onread: typeof onread } = {
        ...where,
        onread,
        ...(isIP(host) === 0 ? { servername: host } : {}),
      };
      const socket = tls ? connectTls(secure) : connect({ ...where, noDelay: true, onread });
      if (tls) socket.setNoDelay(true);
      this.socket = socket;
      socket.on(tls ? "secureConnect" : "connect", () => {
        const key = randomBytes(16).toString("base64");
        const defaultPort = tls ? 443 : 80;
        const hostHeader = `${isIP(host) === 6 ? `[${host}]` : host}${port === defaultPort ? "" : `:${port}`}`;
        socket.write(
          `GET ${path} HTTP/1.1\r\nHost: ${hostHeader}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      socket.on("error", (error) => this.settle?.(error));
      socket.on("close", () => {
        this.settle?.(new Error("connection closed before the upgrade"));
        if (!this.closing) {
          this.closing = true;
          this.onClose(this.closeCode === 0 ? 1006 : this.closeCode);
        }
      });
    });
  }

  /** Writes an encoded frame; false when the socket is gone. */
  send(frame: Buffer): boolean {
    const socket = this.socket;
    if (socket === undefined || this.closing || socket.destroyed) return false;
    socket.write(frame);
    return true;
  }

  sendText(text: string): boolean {
    return this.send(encodeClientFrame(text));
  }

  /** Drops the connection without a close handshake. */
  destroy(): void {
    this.closing = true;
    this.socket?.destroy();
  }

  /**
   * Starts the close handshake (1000) and ends our side of the TCP connection;
   * resolves once the socket is closed or after `graceMs`, then destroys it.
   * A server the bench does not own sees a normal close, not a dropped connection.
   */
  close(graceMs: number): Promise<void> {
    const socket = this.socket;
    this.closing = true;
    if (socket === undefined || socket.destroyed) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const timer = setTimeout(() => socket.destroy(), graceMs);
      socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      if (!this.upgraded || socket.writableEnded) {
        socket.destroy();
        return;
      }
      const body = Buffer.allocUnsafe(2);
      body.writeUInt16BE(CLOSE_NORMAL, 0);
      socket.end(encodeClientFrame(body, OP_CLOSE));
    });
  }

  private feed(buf: Buffer, bytes: number): void {
    const now = nowMicros();
    if (!this.upgraded) {
      this.append(buf, 0, bytes);
      if (this.upgrade()) this.parsePending(now);
      return;
    }
    let start = 0;
    // Finish a frame that began in an earlier read, taking only what it needs.
    while (this.pendingLength > 0 && start < bytes) {
      const pending = this.pending as Buffer;
      const total = frameLength(pending, 0, this.pendingLength);
      const wanted = total < 0 ? MAX_HEADER - this.pendingLength : total - this.pendingLength;
      const take = Math.min(Math.max(wanted, 1), bytes - start);
      this.append(buf, start, start + take);
      start += take;
      this.parsePending(now);
    }
    if (start < bytes) {
      const used = this.parse(buf, start, bytes, now);
      if (used < bytes) this.append(buf, used, bytes);
    }
  }

  /** Looks for the end of the upgrade response in the pending bytes; true once upgraded. */
  private upgrade(): boolean {
    const pending = this.pending as Buffer;
    const end = pending.subarray(0, this.pendingLength).indexOf(HEADER_END);
    if (end < 0) {
      if (this.pendingLength > 16_384) this.settle?.(new Error("upgrade response too long"));
      return false;
    }
    const head = pending.toString("latin1", 0, end);
    if (!/^HTTP\/1\.1 101/.test(head)) {
      const body = pending.toString("utf8", end + 4, this.pendingLength);
      this.settle?.(new Error(`upgrade refused: ${head.split("\r\n")[0] ?? ""} ${body}`.trim()));
      return false;
    }
    pending.copyWithin(0, end + 4, this.pendingLength);
    this.pendingLength -= end + 4;
    this.upgraded = true;
    this.settle?.();
    return true;
  }

  private parsePending(now: number): void {
    const pending = this.pending;
    if (pending === undefined || this.pendingLength === 0) return;
    const used = this.parse(pending, 0, this.pendingLength, now);
    if (used === 0) return;
    pending.copyWithin(0, used, this.pendingLength);
    this.pendingLength -= used;
  }

  /** Handles every whole frame in buf[start, end); returns where the first incomplete one starts. */
  private parse(buf: Buffer, start: number, end: number, now: number): number {
    let at = start;
    for (;;) {
      const total = frameLength(buf, at, end);
      if (total < 0 || at + total > end) return at;
      const first = buf[at] ?? 0;
      const length = (buf[at + 1] ?? 0) & 0x7f;
      const header = length < 126 ? 2 : length === 126 ? 4 : 10;
      this.frame(first & 0x0f, buf, at + header, at + total, now);
      at += total;
    }
  }

  private frame(opcode: number, buf: Buffer, start: number, end: number, now: number): void {
    switch (opcode) {
      case OP_TEXT:
      case OP_BINARY:
      case OP_CONTINUATION: {
        const marker = findMarker(buf, start, end);
        if (marker >= 0 && hasPayloadHeader(marker, end)) {
          this.options.sink.payload(readTag(buf, marker), readSentAt(buf, marker), now);
          return;
        }
        this.onControl(buf.toString("utf8", start, end));
        return;
      }
      case OP_CLOSE: {
        this.closeCode = end - start >= 2 ? buf.readUInt16BE(start) : 1005;
        const socket = this.socket;
        // Our own close() already sent one and ended the socket.
        if (socket !== undefined && !socket.destroyed && !socket.writableEnded) {
          // Echo the close (RFC 6455 5.5.1), then let the server end the TCP connection.
          const reply = encodeClientFrame("", OP_CLOSE);
          socket.end(reply);
        }
        return;
      }
      case OP_PING: {
        const frame = Buffer.allocUnsafe(6 + (end - start));
        frame[0] = 0x8a;
        frame[1] = 0x80 | (end - start);
        frame.writeUInt32BE(0, 2);
        buf.copy(frame, 6, start, end);
        this.send(frame);
        return;
      }
      default:
        return;
    }
  }

  private append(buf: Buffer, start: number, end: number): void {
    const needed = this.pendingLength + (end - start);
    let pending = this.pending;
    if (pending === undefined || pending.length < needed) {
      const grown = Buffer.allocUnsafe(Math.max(256, needed * 2));
      if (pending !== undefined) pending.copy(grown, 0, 0, this.pendingLength);
      pending = grown;
      this.pending = grown;
    }
    buf.copy(pending, this.pendingLength, start, end);
    this.pendingLength = needed;
  }
}
