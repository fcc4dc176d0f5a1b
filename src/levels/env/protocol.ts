/**
 * The wire between the supervisor (in the daemon) and an isolate host process.
 *
 * The two ends talk over one Unix socket pair (the host's fd 3), in frames:
 *
 *     u32 header length | u32 body length | header (JSON) | body (raw bytes)
 *
 * The header is a small JSON message (`SupervisorMessage` or `HostMessage`); the
 * body carries request and response bodies as they are, so binary payloads are
 * never base64-encoded and a hello-world request costs one small JSON parse.
 * Both directions are untrusted by the other side only as far as the
 * supervisor goes: the supervisor checks every host message (a host runs tenant
 * code and may be subverted), the host trusts the supervisor.
 */
import type { Socket } from 'node:net';

/** Upper bound for one frame's header; anything larger is a protocol violation. */
export const MAX_HEADER_BYTES = 4 * 1024 * 1024;
/** Upper bound for one frame's body (request/response bodies are capped below this). */
export const MAX_BODY_BYTES = 64 * 1024 * 1024;

export type HeaderList = Array<[string, string]>;

/** Why a request did not get a response from tenant code. */
export type InvokeFailure =
  | 'exception' // tenant code threw or returned something that is not a Response
  | 'cpu' // a run of tenant code exceeded its CPU-time limit; the isolate was reset
  | 'memory' // the isolate exceeded its heap limit; the isolate was reset
  | 'unloaded' // the isolate is gone (reset, unloaded, or never loaded here)
  | 'invalid-response'; // the response the isolate produced breaks the limits

/** Load-time facts about the tenant's module. */
export interface IsolateLimits {
  memoryMiB: number;
  cpuMs: number;
  maxTimers: number;
  maxTimerMs: number;
}

export type SupervisorMessage =
  | { t: 'load'; inst: string; gen: number; code: string; limits: IsolateLimits; vars: Record<string, string> }
  | { t: 'unload'; inst: string; gen: number }
  | { t: 'check'; id: number; code: string }
  | { t: 'req'; id: number; inst: string; gen: number; method: string; url: string; headers: HeaderList }
  | { t: 'reply'; inst: string; gen: number; call: number; ok: boolean; value: unknown; binary?: boolean };

export type HostMessage =
  | { t: 'ready'; pid: number }
  | { t: 'loaded'; inst: string; gen: number; ms: number }
  | { t: 'load-failed'; inst: string; gen: number; error: string }
  | { t: 'checked'; id: number; error: string | null }
  | { t: 'res'; id: number; status: number; headers: HeaderList }
  | { t: 'res-failed'; id: number; failure: InvokeFailure; detail: string }
  | { t: 'call'; inst: string; gen: number; call: number; kind: string; fields: Record<string, unknown> }
  | { t: 'events'; events: Array<{ inst: string; time: number; kind: string; fields: Record<string, unknown> }> }
  | { t: 'reset'; inst: string; gen: number; reason: InvokeFailure; detail: string }
  | { t: 'stats'; rss: number; isolates: number; usage?: Array<{ inst: string; gen: number; heapBytes: number; cpuNs: number }> };

const EMPTY = Buffer.alloc(0);

export function encodeFrame(message: object, body: Uint8Array = EMPTY): Buffer {
  const header = Buffer.from(JSON.stringify(message));
  const frame = Buffer.allocUnsafe(8 + header.length + body.length);
  frame.writeUInt32BE(header.length, 0);
  frame.writeUInt32BE(body.length, 4);
  header.copy(frame, 8);
  frame.set(body, 8 + header.length);
  return frame;
}

/**
 * Reads frames from a socket and hands each one to `onFrame`. A frame over the
 * size bounds or a header that is not JSON ends the connection: `onViolation`
 * is called once and no more frames are delivered.
 */
export function readFrames(socket: Socket, onFrame: (message: unknown, body: Buffer) => void, onViolation: (why: string) => void): void {
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let broken = false;
  socket.on('data', (chunk: Buffer) => {
    if (broken) return;
    pending.push(chunk);
    pendingBytes += chunk.length;
    if (pendingBytes < 8) return;
    let buf = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingBytes);
    let offset = 0;
    while (buf.length - offset >= 8) {
      const headerLength = buf.readUInt32BE(offset);
      const bodyLength = buf.readUInt32BE(offset + 4);
      if (headerLength > MAX_HEADER_BYTES || bodyLength > MAX_BODY_BYTES) {
        broken = true;
        onViolation(`frame too large (header ${headerLength} B, body ${bodyLength} B)`);
        return;
      }
      const end = offset + 8 + headerLength + bodyLength;
      if (buf.length < end) break;
      let message: unknown;
      try {
        message = JSON.parse(buf.toString('utf8', offset + 8, offset + 8 + headerLength));
      } catch {
        broken = true;
        onViolation('frame header is not JSON');
        return;
      }
      onFrame(message, buf.subarray(offset + 8 + headerLength, end));
      offset = end;
    }
    buf = buf.subarray(offset);
    pending = buf.length > 0 ? [buf] : [];
    pendingBytes = buf.length;
  });
}
