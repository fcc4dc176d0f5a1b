/**
 * The CLI side of the API's WebSocket streams (exec, console): connecting with
 * the same bearer token and reason header as every request, a refusal as the
 * API's own one-line error, and the frame format of docs/api.md — binary frames
 * with a channel byte (0 stdin, 1 stdout, 2 stderr), JSON text frames for control.
 */
import { WebSocket, type RawData } from 'ws';
import type { Client } from './client.js';
import { apiError } from './client.js';
import { CliError } from './output.js';

export const CHANNEL = { stdin: 0, stdout: 1, stderr: 2 } as const;

/** Opens `path` (with `query`, keys may repeat) as a WebSocket; rejects with the API's error when refused. */
export function openSocket(c: Client, path: string, query: Array<[string, string]> = []): Promise<WebSocket> {
  if (!c.config.token) throw new CliError('no API token: set STRATA_TOKEN, pass --token, or put {"url", "token"} in ~/.config/strata/config.json', 'STRATA_ERR_UNAUTHENTICATED');
  const url = new URL(`${c.config.url}${path}`);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  for (const [k, v] of query) url.searchParams.append(k, v);
  const headers: Record<string, string> = { authorization: `Bearer ${c.config.token}` };
  if (c.config.reason) headers['x-strata-reason'] = c.config.reason;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { headers });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => reject(apiError(res.statusCode ?? 0, text)));
    });
    ws.once('error', (e: Error & { code?: string }) => {
      if (e.code === 'ECONNREFUSED') reject(new CliError(`cannot reach the Strata API at ${c.config.url} — is 'strata up' running?`));
      else reject(new CliError(`connection to ${c.config.url} failed: ${e.message}`, e.code));
    });
  });
}

export const stdinFrame = (data: Buffer): Buffer => Buffer.concat([Buffer.of(CHANNEL.stdin), data]);

/** Sends a JSON control message when the socket is open. */
export function sendControl(ws: WebSocket, message: Record<string, unknown>): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

export interface SocketHandlers {
  output(channel: number, data: Buffer): void;
  control(message: Record<string, unknown>): void;
}

export function onFrames(ws: WebSocket, h: SocketHandlers): void {
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (isBinary) {
      if (buf.length > 1) h.output(buf[0]!, buf.subarray(1));
      return;
    }
    try {
      h.control(JSON.parse(buf.toString('utf8')) as Record<string, unknown>);
    } catch {
      /* not ours: ignore */
    }
  });
}

/** Puts a terminal stdin into raw mode (keys go through as typed); returns the undo. */
export function rawMode(): () => void {
  const stdin = process.stdin;
  if (!stdin.isTTY) return () => undefined;
  stdin.setRawMode(true);
  return () => stdin.setRawMode(false);
}
