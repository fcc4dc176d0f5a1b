/**
 * `/v1/listeners`: the gateway's listeners (address, port, protocol), managed by
 * the provider. Those given to `strata up --listen` are listed too (`origin:
 * "command-line"`) and cannot be deleted here. A new listener is bound before
 * the call answers; an address that cannot be bound is refused, never stored.
 */
import { createServer, isIP } from 'node:net';
import { z } from 'zod';
import { authorize, type Principal } from '../auth/policy.js';
import { listenerConfig } from '../control/front-door/front-door.js';
import { StrataError, conflict, notFound } from '../core/errors.js';
import type { ListenerConfig } from '../gateway/types.js';
import type { StoredListener } from '../store/types.js';
import { defineRoute, type AuditFn } from './route.js';
import type { Services } from './services.js';
import { ErrorBody, Hostname, Name, list } from './schemas.js';

const tag = 'listeners';
const PROTOCOLS = ['http', 'https', 'tls-passthrough'] as const;

export const Listener = z.object({
  name: z.string(),
  address: z.string(),
  /** The bound port (as the gateway reports it while it runs). */
  port: z.number(),
  protocol: z.enum(PROTOCOLS),
  defaultSite: z.string().nullable(),
  strictSni: z.boolean(),
  origin: z.enum(['api', 'command-line']),
  createdAt: z.string().nullable(),
});
export const ListenerCreate = z.object({
  name: Name,
  address: z.string().refine((a) => isIP(a) !== 0, 'an IP literal (127.0.0.2, ::1, 0.0.0.0)'),
  port: z.number().int().min(1).max(65535),
  protocol: z.enum(PROTOCOLS),
  defaultSite: Hostname.optional(),
  strictSni: z.boolean().optional(),
}).strict();
const Params = z.object({ name: Name }).strict();

const boundPort = (s: Services, id: string, fallback: number): number =>
  s.gateway?.addresses().find((a) => a.id === id)?.port ?? fallback;

function presentFixed(s: Services, l: ListenerConfig) {
  return {
    name: l.id, address: l.address, port: boundPort(s, l.id, l.port), protocol: l.protocol, defaultSite: l.defaultSite ?? null,
    strictSni: l.strictSni === true, origin: 'command-line' as const, createdAt: null,
  };
}
const presentStored = (s: Services, l: StoredListener) => ({
  name: l.name, address: l.address, port: boundPort(s, l.name, l.port), protocol: l.protocol, defaultSite: l.defaultSite,
  strictSni: l.strictSni, origin: 'api' as const, createdAt: l.createdAt,
});

/** Binds and closes the address once, so a taken or foreign address is a clear 409 instead of a stored listener that never serves. */
function probeBind(address: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', (e: NodeJS.ErrnoException) =>
      reject(conflict(`cannot listen on ${address}:${port} (${e.code ?? e.message})`, { address, port, code: e.code })));
    server.listen({ host: address, port, exclusive: true }, () => server.close(() => resolve()));
  });
}

/** Adds a listener and binds it before answering. Also what `apply` creates listeners with. */
export async function createListener(s: Services, p: Principal, body: z.infer<typeof ListenerCreate>, audit: AuditFn): Promise<StoredListener> {
  authorize(p, 'listener.create');
  const frontDoor = s.frontDoor;
  if (!frontDoor) throw new StrataError('STRATA_ERR_UNSUPPORTED', 'this daemon runs without the gateway (strata up --no-gateway)');
  if (body.protocol !== 'https' && body.strictSni !== undefined) {
    throw new StrataError('STRATA_ERR_VALIDATION', 'body.strictSni: https listeners only', { issues: [{ field: 'body.strictSni', message: 'https listeners only' }] });
  }
  const clash = [...frontDoor.listeners.map((l) => l.id), ...s.store.listListeners().map((l) => l.name)].includes(body.name);
  if (clash) throw conflict(`listener '${body.name}' already exists`, { kind: 'listener', name: body.name });
  await probeBind(body.address, body.port);
  const stored = s.store.transaction(() => {
    const l = s.store.createListener({
      name: body.name, address: body.address, port: body.port, protocol: body.protocol,
      defaultSite: body.defaultSite ?? null, strictSni: body.strictSni === true,
    });
    audit({ action: 'listener.create', target: l.name, tenantId: null, details: { ...listenerConfig(l) } });
    return l;
  });
  await frontDoor.flush();
  if (s.gateway && !s.gateway.addresses().some((a) => a.id === stored.name)) {
    s.store.deleteListener(stored.id); // the gateway could not use it after all (see the daemon log): not kept
    await frontDoor.flush();
    throw conflict(`the gateway cannot listen on ${body.address}:${body.port}`, { address: body.address, port: body.port });
  }
  return stored;
}

/** Removes an API-made listener with no site bound to it. Also what `apply` replaces listeners with. */
export async function deleteListener(s: Services, p: Principal, name: string, audit: AuditFn): Promise<void> {
  authorize(p, 'listener.delete');
  if (s.frontDoor?.listeners.some((l) => l.id === name)) {
    throw conflict(`listener '${name}' comes from the command line (strata up --listen); restart without it`, { name: name });
  }
  const l = s.store.getListener(name);
  if (!l) throw notFound('listener', name);
  // Sites bound to it would be served nowhere: they are rebound or deleted first.
  const bound = s.store.listSites().filter((x) => x.listeners?.includes(l.name)).map((x) => x.hostname);
  if (bound.length > 0) {
    throw new StrataError('STRATA_ERR_NOT_EMPTY', `listener '${l.name}' serves sites bound to it (${bound.slice(0, 5).join(', ')}${bound.length > 5 ? ', …' : ''})`, { sites: bound });
  }
  s.store.transaction(() => {
    s.store.deleteListener(l.id);
    audit({ action: 'listener.delete', target: l.name, tenantId: null });
  });
  await s.frontDoor?.flush();
}

export const listenerRoutes = [
  defineRoute({
    method: 'GET', url: '/v1/listeners', tag, summary: "The gateway's listeners", responses: { 200: list(Listener) },
    handler: ({ p }, s) => {
      authorize(p, 'listener.list');
      const fixed = (s.frontDoor?.listeners ?? []).map((l) => presentFixed(s, l));
      return { body: { items: [...fixed, ...s.store.listListeners().map((l) => presentStored(s, l))] } };
    },
  }),
  defineRoute({
    method: 'POST', url: '/v1/listeners', tag, summary: 'Add a gateway listener (live)', body: ListenerCreate, auditAs: 'listener.create',
    responses: { 201: Listener, 409: ErrorBody, 422: ErrorBody },
    handler: async ({ p, body, audit }, s) => ({ status: 201, body: presentStored(s, await createListener(s, p, body, audit)) }),
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/listeners/:name', tag, summary: 'Remove a gateway listener (live)', params: Params, auditAs: 'listener.delete',
    responses: { 204: null, 404: ErrorBody, 409: ErrorBody },
    handler: async ({ p, params, audit }, s) => {
      await deleteListener(s, p, params.name, audit);
      return { status: 204, body: null };
    },
  }),
];
