/**
 * An outgoing TCP connection driven on Node's native handle, without
 * net.Socket. A TLS passthrough stream lives for a handful of reads and
 * writes, and a net.Socket costs more than those: its construction, the
 * stream state machines, and the ticks of ending and closing were a third of
 * a passthrough connection's CPU. Here a connection is the handle, one
 * object, and a few callbacks: reads land in a caller-owned buffer (the
 * `onread` idea, without the stream around it), writes are WriteWraps that
 * usually complete at once, and ending and closing are one native call each.
 *
 * Semantics are those passthrough needs: half-close both ways (`end` sends
 * FIN after pending writes; `onEnd` reports the peer's), backpressure (`write`
 * returns false while a write is pending, `onDrain` when none is), and `close`
 * once both directions are done or on `destroy` / any error.
 *
 * `tcp_wrap` and `stream_wrap` are Node internals (as `_http_common` is for
 * http-parser.ts), reached through `process.binding`; `assertRawTcpShape`
 * fails loudly at start if a Node upgrade changes them.
 */
import { isIPv6 } from 'node:net';

interface StreamHandle {
  onread: (this: StreamHandle) => unknown;
  readStart(): number;
  readStop(): number;
  useUserBuffer(buf: Uint8Array): void;
  writeBuffer(req: object, buf: Uint8Array): number;
  shutdown(req: object): number;
  close(cb: () => void): void;
  setNoDelay(on: boolean): number;
  connect(req: object, address: string, port: number): number;
  connect6(req: object, address: string, port: number): number;
  [owner: symbol]: RawTcp;
}

interface Bindings {
  tcp: { TCP: new (type: number) => StreamHandle; TCPConnectWrap: new () => Record<string, unknown>; constants: { SOCKET: number } };
  stream: {
    WriteWrap: new () => Record<string, unknown>;
    ShutdownWrap: new () => Record<string, unknown>;
    streamBaseState: Int32Array;
    kReadBytesOrError: number;
    kLastWriteWasAsync: number;
  };
  eof: number;
}

const binding = process as unknown as { binding(name: string): unknown };
const B: Bindings = {
  tcp: binding.binding('tcp_wrap') as Bindings['tcp'],
  stream: binding.binding('stream_wrap') as Bindings['stream'],
  eof: (binding.binding('uv') as { UV_EOF: number }).UV_EOF,
};
const { streamBaseState, kReadBytesOrError, kLastWriteWasAsync } = B.stream;
const OWNER = Symbol('RawTcp');

export function assertRawTcpShape(): void {
  const h = new B.tcp.TCP(B.tcp.constants.SOCKET);
  const ok = typeof h.readStart === 'function' && typeof h.writeBuffer === 'function' && typeof h.shutdown === 'function' &&
    typeof h.useUserBuffer === 'function' && typeof B.stream.WriteWrap === 'function' && typeof B.stream.ShutdownWrap === 'function' &&
    typeof B.tcp.TCPConnectWrap === 'function' && streamBaseState instanceof Int32Array && typeof B.eof === 'number';
  h.close(() => {});
  if (!ok) throw new Error(`this Node.js (${process.version}) has TCP bindings the gateway does not know`);
}

export interface RawTcpEvents {
  /** Connected (and TCP_NODELAY set). */
  onConnect(): void;
  /**
   * `n` bytes read into `buf` (the connection's current `buffer`). Return
   * false to stop reading until `resumeReading`.
   */
  onData(n: number, buf: Buffer): boolean;
  /** The peer half-closed. */
  onEnd(): void;
  /** Every pending write has completed. */
  onDrain(): void;
  /** Connect, read or write failed (the connection is being closed). */
  onError(connecting: boolean): void;
  /** The handle is closed; nothing more happens on this connection. */
  onClose(): void;
}

export class RawTcp {
  private readonly handle: StreamHandle;
  /** Where the next read lands; the owner may replace it (from the next read on). */
  buffer: Buffer;
  private bufferInUse: Buffer;
  private connecting = true;
  private pendingWrites = 0;
  /** `end` was called: no more writes. */
  writableEnded = false;
  private shutDown = false;
  private readEnded = false;
  private closed = false;
  /** Reading stopped by the owner (onData said false). */
  private paused = false;

  constructor(host: string, port: number, buffer: Buffer, private readonly events: RawTcpEvents) {
    this.buffer = buffer;
    this.bufferInUse = buffer;
    const handle = new B.tcp.TCP(B.tcp.constants.SOCKET);
    this.handle = handle;
    handle[OWNER] = this;
    handle.onread = onRead;
    handle.useUserBuffer(buffer);
    const req = new B.tcp.TCPConnectWrap();
    req.oncomplete = onConnected;
    req.owner = this;
    const err = isIPv6(host) ? handle.connect6(req, host, port) : handle.connect(req, host, port);
    if (err !== 0) process.nextTick(() => this.fail());
  }

  /** Writes `data` (kept alive by the request while the kernel has not taken it); false while writes are pending. */
  write(data: Buffer): boolean {
    if (this.closed || this.writableEnded) return true;
    const req = new B.stream.WriteWrap();
    req.handle = this.handle;
    req.oncomplete = onWritten;
    req.owner = this;
    req.async = false;
    const err = this.handle.writeBuffer(req, data);
    if (err !== 0) {
      this.fail();
      return true;
    }
    if (streamBaseState[kLastWriteWasAsync] === 0) return this.pendingWrites === 0;
    req.buffer = data;
    this.pendingWrites++;
    return false;
  }

  /** Sends FIN once pending writes are out (libuv queues the shutdown behind them). */
  end(): void {
    if (this.closed || this.writableEnded) return;
    this.writableEnded = true;
    const req = new B.stream.ShutdownWrap();
    req.oncomplete = onShutDown;
    req.handle = this.handle;
    req.owner = this;
    if (this.handle.shutdown(req) !== 0) this.destroy();
  }

  resumeReading(): void {
    if (!this.paused) return;
    this.paused = false;
    if (!this.closed && !this.readEnded) this.handle.readStart();
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.handle.close(() => this.events.onClose());
  }

  // ---- from the handle ----

  /** @internal */
  connected(status: number): void {
    if (this.closed) return;
    if (status !== 0) {
      this.fail(); // still connecting: the owner tells a refused backend from a broken one
      return;
    }
    this.connecting = false;
    this.handle.setNoDelay(true);
    this.handle.readStart();
    this.events.onConnect();
  }

  /** @internal */
  read(): Buffer | undefined {
    const n = streamBaseState[kReadBytesOrError]!;
    if (this.closed) return undefined;
    if (n > 0) {
      if (!this.events.onData(n, this.bufferInUse) && !this.closed) {
        this.paused = true;
        this.handle.readStop();
      }
      if (this.buffer !== this.bufferInUse) {
        this.bufferInUse = this.buffer;
        return this.buffer; // the handle reads into this one from now on
      }
      return undefined;
    }
    if (n === B.eof) {
      this.readEnded = true;
      this.events.onEnd();
      if (this.shutDown) this.destroy();
    } else if (n < 0) {
      this.fail();
    }
    return undefined;
  }

  /** @internal */
  written(status: number): void {
    this.pendingWrites--;
    if (this.closed) return;
    if (status < 0) this.fail();
    else if (this.pendingWrites === 0) this.events.onDrain();
  }

  /** @internal */
  shutdownDone(status: number): void {
    this.shutDown = true;
    if (status < 0) this.fail();
    else if (this.readEnded) this.destroy();
  }

  private fail(): void {
    if (this.closed) return;
    const connecting = this.connecting;
    this.destroy();
    this.events.onError(connecting);
  }
}

// Callbacks set once, shared by every connection (no closure per connection or per write).
function onRead(this: StreamHandle): Buffer | undefined {
  return this[OWNER].read();
}
function onConnected(this: { owner: RawTcp }, status: number): void {
  this.owner.connected(status);
}
function onWritten(this: { owner: RawTcp }, status: number): void {
  this.owner.written(status);
}
function onShutDown(this: { owner: RawTcp }, status: number): void {
  this.owner.shutdownDone(status);
}
