/**
 * `/v1/outputs` (the provider's) and `/v1/tenants/:tenant/outputs` (a
 * tenant's): where the guard delivers alerts — webhook, syslog, and (provider
 * only) a JSON-lines file under the data dir. A webhook's signing secret is in
 * the answer to its creation and never again. A tenant's output receives only
 * its own alerts (`guard/outputs/dispatcher.ts`); its addresses may not be
 * loopback or private ones.
 */
import { z } from 'zod';
import { authorize, isTenantRole, type Principal } from '../auth/policy.js';
import { StrataError, notFound } from '../core/errors.js';
import { PRIORITIES } from '../core/guard-event.js';
import { validationError } from '../core/validation.js';
import { isPrivateHost } from '../guard/outputs/address.js';
import { alertFilePath } from '../guard/outputs/file.js';
import type { OutputSpec, OutputView } from '../guard/outputs/service.js';
import type { OutputConfig } from '../guard/outputs/types.js';
import type { Alert } from '../guard/actuator.js';
import { tenantFor } from './lookup.js';
import { defineRoute, type Call } from './route.js';
import { ErrorBody, Name, list } from './schemas.js';
import type { Services } from './services.js';

const tag = 'outputs';
const Timeout = z.number().int().min(100).max(60_000).default(5000);
/** Header names a receiver may ask for; ours (signature, timestamp, framing) cannot be replaced. */
const HeaderName = z.string().regex(/^[A-Za-z0-9-]{1,64}$/, 'a header name').refine(
  (h) => !/^(x-strata-|content-|host$|transfer-encoding$|connection$|user-agent$)/i.test(h), 'set by Strata',
);
const Common = {
  name: Name,
  minPriority: z.enum(PRIORITIES).optional(),
  rules: z.array(z.string().min(1).max(200)).min(1).max(100).optional(),
};
const OutputCreate = z.discriminatedUnion('type', [
  z.object({
    ...Common, type: z.literal('webhook'),
    url: z.url({ protocol: /^https?$/, error: 'an http or https URL' }).max(2048),
    timeoutMs: Timeout,
    retries: z.number().int().min(0).max(10).default(5),
    headers: z.record(HeaderName, z.string().max(1024).regex(/^[\t\x20-\x7e]*$/, 'printable ASCII')).default({})
      .refine((h) => Object.keys(h).length <= 20, 'at most 20 headers'),
  }).strict(),
  z.object({
    ...Common, type: z.literal('syslog'),
    transport: z.enum(['udp', 'tcp']).default('udp'),
    host: z.string().min(1).max(253).regex(/^(\[[0-9a-fA-F:.]+\]|[0-9a-fA-F:.]+|[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?)$/, 'a host name or address'),
    port: z.number().int().min(1).max(65_535).default(514),
    facility: z.number().int().min(0).max(23).default(16),
    format: z.enum(['json', 'text']).default('json'),
    timeoutMs: Timeout,
  }).strict(),
  z.object({
    ...Common, type: z.literal('file'),
    path: z.string().min(1).max(255).regex(/^[A-Za-z0-9._/-]+$/, 'letters, digits, . _ - and /'),
  }).strict(),
]);

const Output = z.object({
  id: z.string(), tenant: z.string().nullable(), name: z.string(), type: z.enum(['webhook', 'syslog', 'file']),
  config: z.record(z.string(), z.unknown()), minPriority: z.enum(PRIORITIES).nullable(), rules: z.array(z.string()).nullable(),
  createdAt: z.string(),
  /** Why the output does not run, when it cannot (e.g. its secret was sealed under a lost key). */
  error: z.string().nullable(),
  stats: z.object({
    queued: z.number(), delivered: z.number(), failedAttempts: z.number(), deadLetters: z.number(), dropped: z.number(),
    lastError: z.string().nullable(), lastErrorAt: z.string().nullable(), lastDeliveredAt: z.string().nullable(),
  }).nullable(),
});
const Created = Output.extend({ secret: z.string().nullable() });
const TestResult = z.object({ delivered: z.boolean(), error: z.string().nullable() });

const TenantParams = z.object({ tenant: Name }).strict();
const TenantNamed = z.object({ tenant: Name, name: Name }).strict();
const Named = z.object({ name: Name }).strict();

const outputsOf = (s: Services) => {
  if (!s.outputs) throw new StrataError('STRATA_ERR_UNAVAILABLE', 'alert outputs need the daemon');
  return s.outputs;
};

/** The caller acts on the provider's outputs: provider roles only (a tenant's are under its tenant). */
function providerScope(p: Principal, action: 'output.create' | 'output.read' | 'output.delete'): null {
  if (isTenantRole(p.role)) throw new StrataError('STRATA_ERR_FORBIDDEN', `role ${p.role} may not ${action} the provider's outputs`, { action, role: p.role });
  authorize(p, action);
  return null;
}

/** Extra webhook headers often carry a receiver's own credentials: their names are shown, never their values. */
const REDACTED = '[redacted]';

function present(s: Services, o: OutputView): z.infer<typeof Output> {
  const { type, ...config } = o.config;
  if (o.config.type === 'webhook') (config as Record<string, unknown>).headers = Object.fromEntries(Object.keys(o.config.headers).map((h) => [h, REDACTED]));
  return {
    id: o.id, tenant: o.tenantId ? (s.store.getTenant(o.tenantId)?.name ?? null) : null, name: o.name, type, config,
    minPriority: o.filter.minPriority, rules: o.filter.rules, createdAt: o.createdAt, error: o.error, stats: o.stats,
  };
}

function specOf(body: z.infer<typeof OutputCreate>, tenantId: string | null, s: Services): OutputSpec {
  const { name, minPriority, rules, ...config } = body;
  if (config.type === 'file') {
    if (tenantId !== null) throw validationError('body.type', "file outputs are the provider's only");
    if (!alertFilePath('/alerts', config.path)) throw validationError('body.path', 'a relative path inside the data dir\'s alerts/');
  }
  if (tenantId !== null && !outputsOf(s).allowPrivateTargets) {
    const host = config.type === 'webhook' ? new URL(config.url).hostname : config.type === 'syslog' ? config.host : null;
    if (host !== null && isPrivateHost(host)) throw validationError(config.type === 'webhook' ? 'body.url' : 'body.host', "a tenant's output may not reach loopback or private addresses");
  }
  return { name, config: config as OutputConfig, filter: { minPriority: minPriority ?? null, rules: rules ?? null } };
}

/** A sample alert for `test`: the output's owner's, so it passes the tenant check it would meet. */
const sampleAlert = (tenantId: string | null, p: Principal): Alert => ({
  id: `al_test_${Date.now()}`, time: new Date().toISOString(), eventTime: Date.now(), rule: 'strata.output.test', priority: 'info',
  output: `test alert sent by ${p.name}`, tenantId, instanceId: null, level: 'strata', kind: 'output.test', action: 'notify',
  count: 1, fields: {}, tags: ['test'], auditIndex: -1,
});

type AnyCall = Call<unknown, unknown, unknown>;

function create(c: AnyCall, s: Services, tenantId: string | null) {
  const body = c.body as z.infer<typeof OutputCreate>;
  const outputs = outputsOf(s);
  const spec = specOf(body, tenantId, s);
  const made = s.store.transaction(() => {
    const r = outputs.create(tenantId, spec);
    c.audit({ action: 'output.create', target: r.output.name, tenantId, details: { type: spec.config.type, id: r.output.id } });
    return r;
  });
  outputs.sync();
  return { status: 201, body: { ...present(s, made.output), secret: made.secret } };
}

function remove(c: AnyCall, s: Services, tenantId: string | null, name: string) {
  const outputs = outputsOf(s);
  const o = outputs.get(tenantId, name);
  if (!o) throw notFound('output', name);
  s.store.transaction(() => {
    outputs.delete(o.id);
    c.audit({ action: 'output.delete', target: o.name, tenantId, details: { id: o.id } });
  });
  outputs.sync();
  return { status: 204, body: null };
}

async function test(c: AnyCall, s: Services, tenantId: string | null, name: string) {
  const sent = outputsOf(s).test(tenantId, name, sampleAlert(tenantId, c.p));
  if (!sent) throw notFound('output', name);
  const r = await sent;
  c.audit({ action: 'output.test', target: name, tenantId, details: { delivered: r.ok, ...(r.ok ? {} : { error: r.error }) } });
  return { body: { delivered: r.ok, error: r.ok ? null : r.error } };
}

function show(s: Services, tenantId: string | null, name: string) {
  const o = outputsOf(s).get(tenantId, name);
  if (!o) throw notFound('output', name);
  return { body: present(s, o) };
}

export const outputRoutes = [
  defineRoute({
    method: 'POST', url: '/v1/outputs', tag, summary: "Add a provider output (every alert, host-level ones too); a webhook's secret is in this answer only",
    body: OutputCreate, auditAs: 'output.create', responses: { 201: Created, 409: ErrorBody },
    handler: (c, s) => create(c as AnyCall, s, providerScope(c.p, 'output.create')),
  }),
  defineRoute({
    method: 'GET', url: '/v1/outputs', tag, summary: "The provider's outputs with their delivery counters", responses: { 200: list(Output) },
    handler: ({ p }, s) => ({ body: { items: outputsOf(s).list(providerScope(p, 'output.read')).map((o) => present(s, o)) } }),
  }),
  defineRoute({
    method: 'GET', url: '/v1/outputs/:name', tag, summary: 'One provider output', params: Named, responses: { 200: Output, 404: ErrorBody },
    handler: ({ p, params }, s) => show(s, providerScope(p, 'output.read'), params.name),
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/outputs/:name', tag, summary: 'Remove a provider output (what it still had queued is dropped)', params: Named,
    auditAs: 'output.delete', responses: { 204: null, 404: ErrorBody },
    handler: (c, s) => remove(c as AnyCall, s, providerScope(c.p, 'output.delete'), c.params.name),
  }),
  defineRoute({
    method: 'POST', url: '/v1/outputs/:name/test', tag, summary: 'Send a test alert through a provider output now; says whether it arrived', params: Named,
    auditAs: 'output.test', responses: { 200: TestResult, 404: ErrorBody },
    handler: (c, s) => test(c as AnyCall, s, providerScope(c.p, 'output.create'), c.params.name),
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/outputs', tag, summary: "Add a tenant output (the tenant's alerts only); a webhook's secret is in this answer only",
    params: TenantParams, body: OutputCreate, auditAs: 'output.create', responses: { 201: Created, 409: ErrorBody },
    handler: (c, s) => create(c as AnyCall, s, tenantFor(s, c.p, c.params.tenant, 'output.create').id),
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/outputs', tag, summary: "A tenant's outputs with their delivery counters", params: TenantParams,
    responses: { 200: list(Output) },
    handler: ({ p, params }, s) => ({ body: { items: outputsOf(s).list(tenantFor(s, p, params.tenant, 'output.read').id).map((o) => present(s, o)) } }),
  }),
  defineRoute({
    method: 'GET', url: '/v1/tenants/:tenant/outputs/:name', tag, summary: "One of a tenant's outputs", params: TenantNamed,
    responses: { 200: Output, 404: ErrorBody },
    handler: ({ p, params }, s) => show(s, tenantFor(s, p, params.tenant, 'output.read').id, params.name),
  }),
  defineRoute({
    method: 'DELETE', url: '/v1/tenants/:tenant/outputs/:name', tag, summary: "Remove a tenant's output", params: TenantNamed,
    auditAs: 'output.delete', responses: { 204: null, 404: ErrorBody },
    handler: (c, s) => remove(c as AnyCall, s, tenantFor(s, c.p, c.params.tenant, 'output.delete').id, c.params.name),
  }),
  defineRoute({
    method: 'POST', url: '/v1/tenants/:tenant/outputs/:name/test', tag, summary: "Send a test alert through a tenant's output now", params: TenantNamed,
    auditAs: 'output.test', responses: { 200: TestResult, 404: ErrorBody },
    handler: (c, s) => test(c as AnyCall, s, tenantFor(s, c.p, c.params.tenant, 'output.create').id, c.params.name),
  }),
];
