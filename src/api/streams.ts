/**
 * Instance streams: `logs` (chunked text), and `exec` and `console` (WebSocket).
 *
 * The WebSocket routes are ordinary routes: an upgrade request is dispatched
 * through fastify like any other (as @fastify/websocket does), so it is
 * authenticated, validated, authorised and 404'd for other tenants by the same
 * code as every route, and an error is an ordinary HTTP error answer. Only once
 * the handler has everything it needs does it upgrade the connection (`ws`).
 * A plain GET on them is answered 426.
 *
 * Frames (see docs/api.md): binary frames carry bytes with a leading channel
 * byte — 0 stdin (client → server), 1 stdout, 2 stderr (server → client), as
 * Kubernetes' `channel.k8s.io`; text frames are JSON control messages —
 * `{"type":"resize","cols","rows"}` and `{"type":"eof"}` from the client,
 * `{"type":"exit","code"}` from the server just before it closes (1000).
 *
 * Every stream ends when the instance is deleted, and its process is killed when
 * the client goes away.
 */
import { ServerResponse, type IncomingMessage } from 'node:http';
import type { Duplex, Readable, Writable } from 'node:stream';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { z } from 'zod';
import { StrataError } from '../core/errors.js';
import type { ExecSession, LevelDriver } from '../levels/driver.js';
import type { Instance, Tenant } from '../store/types.js';
import { instanceFor } from './lookup.js';
import { defineRoute } from './route.js';
import { Name } from './schemas.js';
import type { Services } from './services.js';

const tag = 'instances';
const Params = z.object({ tenant: Name, name: Name }).strict();

/** Largest frame a client may send (stdin is typed or piped, never bulk). */
const MAX_FRAME = 1024 * 1024;
/** Output is paused while this much is queued for a slow client. */
const HIGH_WATER = 1024 * 1024;

export const CHANNEL = { stdin: 0, stdout: 1, stderr: 2 } as const;

const flag = z.enum(['true', 'false', '1', '0', '']).transform((v) => v === 'true' || v === '1' || v === '');
const strings = z.union([z.string(), z.array(z.string())]).transform((v) => (Array.isArray(v) ? v : [v]));

const LogsQuery = z.object({
  follow: flag.optional(),
  tail: z.coerce.number().int().min(0).max(1_000_000).optional(),
}).strict();

const ExecQuery = z.object({
  /** The argv, one `cmd` per word. */
  cmd: strings.pipe(z.array(z.string().min(1).max(4096)).min(1).max(256)),
  tty: flag.optional(),
  /** `NAME=value`, repeated. */
  env: strings.pipe(z.array(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*=/, 'NAME=value').max(8192)).max(64)).optional(),
  cwd: z.string().startsWith('/').max(4096).optional(),
  /** Another user than the instance's own ("uid", "uid:gid", a name from the image), inside the tenant's id range. */
  user: z.string().min(1).max(256).optional(),
  cols: z.coerce.number().int().min(1).max(10_000).optional(),
  rows: z.coerce.number().int().min(1).max(10_000).optional(),
}).strict();

const Control = z.discriminatedUnion('type', [
  z.object({ type: z.literal('resize'), cols: z.number().int().min(1).max(10_000), rows: z.number().int().min(1).max(10_000) }).strict(),
  z.object({ type: z.literal('eof') }).strict(),
]);

// ---- upgrades through the router ----

interface PendingUpgrade {
  socket: Duplex;
  head: Buffer;
}

/** Upgrade requests in flight through the router, by request. */
const pending = new WeakMap<IncomingMessage, PendingUpgrade>();
const servers = new WeakMap<Services, { wss: WebSocketServer; open: Set<WebSocket> }>();

/**
 * Makes upgrade requests reach the routes: each goes through fastify's router
 * with a response bound to its socket, so a refusal is a normal HTTP answer.
 * Open sessions are closed when the API closes.
 */
export function routeUpgrades(app: FastifyInstance, s: Services): void {
  const wss = new WebSocketServer({ noServer: true, maxPayload: MAX_FRAME });
  const open = new Set<WebSocket>();
  servers.set(s, { wss, open });
  app.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    socket.on('error', () => socket.destroy());
    // Node hands every request with an Upgrade header here with its body unread (an h2c attempt on a POST,
    // say): one without a body can still be routed; one with a body cannot be read here, so it is refused.
    const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (hasBody && req.headers.upgrade?.toLowerCase() !== 'websocket') {
      const body = JSON.stringify(new StrataError('STRATA_ERR_VALIDATION', 'a request with a body cannot ask to upgrade the connection').toJSON());
      socket.end(`HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
      return;
    }
    pending.set(req, { socket, head });
    const res = new ServerResponse(req);
    res.assignSocket(socket as never);
    // Answered over HTTP (refused, or not a WebSocket route): the connection ends with the answer.
    res.on('finish', () => {
      if (pending.has(req)) socket.end();
    });
    app.routing(req, res);
  });
  // Before the server waits for its connections: an open session would hold it up.
  app.addHook('preClose', async () => {
    for (const ws of open) ws.terminate();
    wss.close();
  });
}

/**
 * Takes over the connection of an upgrade request and speaks WebSocket on it.
 * `onFail` runs when the handshake is refused (a malformed key, say) or the
 * client leaves first, so what was started for the session is not left running.
 */
function upgrade(s: Services, req: FastifyRequest, onOpen: (ws: WebSocket) => void, onFail: () => void): void {
  const up = pending.get(req.raw)!;
  pending.delete(req.raw);
  const server = servers.get(s);
  if (!server) {
    onFail();
    throw new StrataError('STRATA_ERR_INTERNAL', 'WebSocket upgrades are not routed');
  }
  let opened = false;
  up.socket.once('close', () => {
    if (!opened) onFail();
  });
  server.wss.handleUpgrade(req.raw, up.socket, up.head, (ws) => {
    opened = true;
    announceAudit(s, req);
    server.open.add(ws);
    ws.on('close', () => server.open.delete(ws));
    onOpen(ws);
  });
}

/**
 * The event-stream side of this call's audit entries. The route layer publishes
 * them when the response finishes; an upgraded call's response never does, so
 * they go out once the session is open.
 */
function announceAudit(s: Services, req: FastifyRequest): void {
  const actor = req.strataPrincipal?.name ?? null;
  for (const e of req.strataAuditEvents ?? []) {
    s.events.publish('audit', 'audit.appended', e.tenantId, { action: e.action, target: e.target, actor, result: 'ok' });
  }
}

function requireUpgrade(req: IncomingMessage): void {
  if (!pending.has(req)) {
    throw new StrataError('STRATA_ERR_UPGRADE_REQUIRED', 'this route speaks WebSocket: send Connection: Upgrade, Upgrade: websocket');
  }
}

// ---- shared ----

function driverWith<K extends 'logs' | 'exec' | 'console'>(s: Services, instance: Instance, method: K): LevelDriver & Required<Pick<LevelDriver, K>> {
  const driver = s.registry.forLevel(instance.level);
  if (!driver[method] || !driver.supports.has(method)) {
    throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${instance.level} level has no ${method}`, { level: instance.level, operation: method });
  }
  return driver as LevelDriver & Required<Pick<LevelDriver, K>>;
}

/** Calls `onDeleted` once the instance is deleted; returns the unsubscribe. */
function whenDeleted(s: Services, instance: Instance, onDeleted: () => void): () => void {
  return s.events.subscribe((e) => {
    if (e.type === 'instance.state' && e.data.id === instance.id && e.data.to === 'deleted') onDeleted();
  });
}

const frame = (channel: number, data: Buffer): Buffer => Buffer.concat([Buffer.of(channel), data]);

/** Sends `source` as frames of `channel`, pausing it while the client is slow. */
function pump(ws: WebSocket, source: Readable, channel: number): Promise<void> {
  return new Promise((resolve) => {
    source.on('data', (chunk: Buffer) => {
      if (ws.readyState !== WebSocket.OPEN) return;
      ws.send(frame(channel, chunk), () => {
        if (source.isPaused() && ws.bufferedAmount < HIGH_WATER / 2) source.resume();
      });
      if (ws.bufferedAmount > HIGH_WATER) source.pause();
    });
    source.on('end', resolve);
    source.on('close', resolve);
    source.on('error', () => resolve());
  });
}

/**
 * Client frames: channel-0 bytes to `stdin` (reading from the client pauses
 * while the process is slow to take them), control messages to `control`;
 * anything else closes with 1003/1008.
 */
function onClientFrames(ws: WebSocket, stdin: Writable, control: (c: z.infer<typeof Control>) => void): void {
  ws.on('message', (data: RawData, isBinary: boolean) => {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer);
    if (isBinary) {
      if (buf[0] !== CHANNEL.stdin) return ws.close(1003, 'binary frames from the client are channel 0 (stdin)');
      if (buf.length === 1 || stdin.writableEnded || stdin.destroyed) return;
      if (!stdin.write(buf.subarray(1)) && stdin.writableLength > HIGH_WATER) {
        ws.pause();
        stdin.once('drain', () => ws.resume());
      }
      return;
    }
    let parsed: z.infer<typeof Control>;
    try {
      parsed = Control.parse(JSON.parse(buf.toString('utf8')));
    } catch {
      return ws.close(1008, 'control frames are {"type":"resize","cols","rows"} or {"type":"eof"}');
    }
    control(parsed);
  });
}

const target = (tenant: Tenant, instance: Instance): string => `${tenant.name}/${instance.name}`;

// ---- routes ----

export const streamRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances/:name/logs', tag, raw: true,
    summary: "An instance's captured output as text (stdout and stderr, or the serial console); `follow` keeps it open",
    params: Params, query: LogsQuery, responses: { 200: null },
    handler: async ({ p, params, query, reply, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.logs');
      const driver = driverWith(s, instance, 'logs');
      const stream = await driver.logs(instance.id, { follow: query.follow ?? false, ...(query.tail !== undefined ? { tail: query.tail } : {}) });
      // A tenant reading its own logs is not news; the provider reading them is, with its reason.
      if (p.role === 'provider-admin') audit({ action: 'instance.logs', target: target(tenant, instance), tenantId: tenant.id, details: { follow: query.follow ?? false } });
      reply.hijack();
      const res = reply.raw;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store', 'x-content-type-options': 'nosniff', 'x-accel-buffering': 'no' });
      res.flushHeaders();
      const unsubscribe = whenDeleted(s, instance, () => stream.push(null));
      const finish = (): void => {
        unsubscribe();
        stream.destroy();
      };
      res.on('close', finish);
      stream.on('error', () => res.destroy());
      stream.on('end', () => res.end());
      stream.pipe(res, { end: false });
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances/:name/exec', tag, raw: true,
    summary: 'Run a command inside a running instance (WebSocket; interactive, with or without a terminal)',
    params: Params, query: ExecQuery, responses: { 101: null, 426: null },
    handler: async ({ p, params, query, req, reply, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.exec');
      const driver = driverWith(s, instance, 'exec');
      requireUpgrade(req.raw);
      const tty = query.tty ?? false;
      // Known to the guard before anything of it runs: the driver's runner reports its kernel mark and waits for the bind.
      const operator = s.guard.sessions.open({ kind: 'exec', tenantId: tenant.id, instanceId: instance.id, level: instance.level, user: p.name, argv: query.cmd });
      const session = await driver.exec(instance.id, query.cmd, {
        tty, ...(query.env ? { env: query.env } : {}), ...(query.cwd ? { cwd: query.cwd } : {}),
        ...(query.cols ? { cols: query.cols } : {}), ...(query.rows ? { rows: query.rows } : {}),
        ...(query.user ? { user: query.user } : {}),
        mark: (m) => operator.bind(m),
      }).catch((err: unknown) => {
        operator.close();
        throw err;
      });
      operator.started();
      void session.exit.then(() => operator.close());
      audit({
        action: 'instance.exec', target: target(tenant, instance), tenantId: tenant.id,
        details: { argv: query.cmd, tty, session: operator.id, ...(query.user ? { user: query.user } : {}) },
      });
      reply.hijack();
      upgrade(s, req, (ws) => bridgeExec(s, instance, ws, session), () => session.kill());
    },
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/instances/:name/console', tag, raw: true,
    summary: "Attach to an instance's console (serial port) over WebSocket",
    params: Params, responses: { 101: null, 426: null },
    handler: async ({ p, params, req, reply, audit }, s) => {
      const { tenant, instance } = instanceFor(s, p, params.tenant, params.name, 'instance.console');
      const driver = driverWith(s, instance, 'console');
      requireUpgrade(req.raw);
      // The guest is another kernel: nothing of its processes reaches the guard, so a console session is registered and recorded only.
      const operator = s.guard.sessions.open({ kind: 'console', tenantId: tenant.id, instanceId: instance.id, level: instance.level, user: p.name });
      const serial = await driver.console(instance.id).catch((err: unknown) => {
        operator.close();
        throw err;
      });
      operator.started();
      serial.once('close', () => operator.close());
      audit({ action: 'instance.console', target: target(tenant, instance), tenantId: tenant.id, details: { session: operator.id } });
      reply.hijack();
      upgrade(s, req, (ws) => bridgeConsole(s, instance, ws, serial), () => serial.destroy());
    },
  }),
];

function bridgeExec(s: Services, instance: Instance, ws: WebSocket, session: ExecSession): void {
  onClientFrames(ws, session.stdin, (c) => {
    if (c.type === 'resize') session.resize(c.cols, c.rows);
    else session.stdin.end();
  });
  const unsubscribe = whenDeleted(s, instance, () => session.kill());
  ws.on('close', () => {
    unsubscribe();
    session.kill();
  });
  ws.on('error', () => ws.terminate());
  const output = [pump(ws, session.stdout, CHANNEL.stdout), ...(session.stderr ? [pump(ws, session.stderr, CHANNEL.stderr)] : [])];
  void Promise.all([session.exit, ...output]).then(([code]) => {
    unsubscribe();
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(JSON.stringify({ type: 'exit', code }));
    ws.close(1000, 'exited');
  });
}

function bridgeConsole(s: Services, instance: Instance, ws: WebSocket, serial: Duplex): void {
  onClientFrames(ws, serial, () => undefined);
  const close = (code: number, why: string): void => {
    if (ws.readyState === WebSocket.OPEN) ws.close(code, why);
  };
  const unsubscribe = whenDeleted(s, instance, () => serial.destroy());
  ws.on('close', () => {
    unsubscribe();
    serial.destroy();
  });
  ws.on('error', () => ws.terminate());
  serial.on('error', () => undefined);
  void pump(ws, serial, CHANNEL.stdout).then(() => close(1000, 'console closed'));
}

