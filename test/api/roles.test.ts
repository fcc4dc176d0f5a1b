/**
 * The role table, tested: every role × every action × the caller's own tenant and
 * another tenant. The expected outcomes are written out here by hand — this file
 * is the specification, `src/auth/policy.ts` the implementation.
 *
 * Outcomes: `ok` (the call passed authorization: 2xx, or 409/422 from the state of
 * things), `hidden` (404, as if the object did not exist), `forbidden` (403),
 * `reason` (403 until a provider-admin states a reason).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

type Outcome = 'ok' | 'hidden' | 'forbidden' | 'reason';
type Caller = 'provider' | 'provider+reason' | 'tenant-admin' | 'tenant-member' | 'auditor';
type Where = 'own' | 'other';

interface Case {
  action: string;
  /** Objects the call needs, made fresh per call by the provider (so destructive calls do not interfere). */
  setup?: (tenant: string) => Promise<Record<string, string>>;
  request: (tenant: string, ctx: Record<string, string>) => { method: string; path: string; body?: unknown };
  /** Expected outcome per caller, for the caller's own tenant; another tenant is `hidden` for tenant roles. */
  expect: Record<Caller, Outcome>;
}

const READ_STAFF = { provider: 'ok', 'provider+reason': 'ok', 'tenant-admin': 'ok', 'tenant-member': 'ok', auditor: 'forbidden' } as const;
const PROVIDER_ONLY = { provider: 'ok', 'provider+reason': 'ok', 'tenant-admin': 'forbidden', 'tenant-member': 'forbidden', auditor: 'forbidden' } as const;
const ADMIN_INSIDE = { provider: 'reason', 'provider+reason': 'ok', 'tenant-admin': 'ok', 'tenant-member': 'forbidden', auditor: 'forbidden' } as const;
const STAFF_INSIDE = { provider: 'reason', 'provider+reason': 'ok', 'tenant-admin': 'ok', 'tenant-member': 'ok', auditor: 'forbidden' } as const;
/** Between daemons (moves): the provider's alone, with a reason. */
const PROVIDER_INSIDE = { provider: 'reason', 'provider+reason': 'ok', 'tenant-admin': 'forbidden', 'tenant-member': 'forbidden', auditor: 'forbidden' } as const;
const ADMINS = { provider: 'ok', 'provider+reason': 'ok', 'tenant-admin': 'ok', 'tenant-member': 'forbidden', auditor: 'forbidden' } as const;
const AUDIT_READERS = { provider: 'ok', 'provider+reason': 'ok', 'tenant-admin': 'ok', 'tenant-member': 'ok', auditor: 'ok' } as const;

let d: TestDaemon;
const tokens = {} as Record<Caller, string>;
let n = 0;
const fresh = (p: string): string => `${p}${++n}`;
const REASON = { 'x-strata-reason': 'table test' };

async function admin(method: string, path: string, body?: unknown): Promise<any> {
  const r = await d.request(method, path, { body, headers: REASON });
  assert.ok(r.status < 300, `setup ${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body;
}
const instance = async (t: string, start = true) => {
  const name = fresh('i');
  await admin('POST', `/v1/tenants/${t}/instances?wait=10`, { name, level: 'os', start });
  return { name };
};
const withSnapshot = async (t: string) => {
  const { name } = await instance(t, false);
  const snap = fresh('s');
  await admin('POST', `/v1/tenants/${t}/instances/${name}/snapshots?wait=10`, { name: snap });
  return { name, snap };
};
const site = async (t: string) => {
  const host = `${fresh('h')}.${t}.example`;
  await admin('POST', `/v1/tenants/${t}/sites`, { hostname: host, target: { kind: 'static', root: 'www' } });
  return { host };
};
const certificate = async (t: string) => {
  const { host } = await site(t);
  const body = await admin('POST', `/v1/tenants/${t}/certificates/local-ca`, { hostnames: [host] });
  return { id: body.id as string };
};

const CASES: Case[] = [
  { action: 'tenant.read', request: (t) => ({ method: 'GET', path: `/v1/tenants/${t}` }), expect: READ_STAFF },
  { action: 'tenant.update', request: (t) => ({ method: 'PATCH', path: `/v1/tenants/${t}`, body: { quota: { sites: 500 } } }), expect: PROVIDER_ONLY },
  // Non-empty tenants refuse deletion with 409, which still shows the call was authorised.
  { action: 'tenant.delete', request: (t) => ({ method: 'DELETE', path: `/v1/tenants/${t}` }), expect: PROVIDER_ONLY },
  { action: 'user.create', request: (t) => ({ method: 'POST', path: '/v1/users', body: { name: fresh('u'), role: 'tenant-member', tenant: t } }), expect: ADMINS },
  { action: 'user.list', request: (t) => ({ method: 'GET', path: `/v1/users?tenant=${t}` }), expect: ADMINS },
  { action: 'instance.create', request: (t) => ({ method: 'POST', path: `/v1/tenants/${t}/instances?wait=10`, body: { name: fresh('n'), level: 'os' } }), expect: ADMIN_INSIDE },
  { action: 'instance.list', request: (t) => ({ method: 'GET', path: `/v1/tenants/${t}/instances` }), expect: READ_STAFF },
  { action: 'instance.read', setup: (t) => instance(t), request: (t, c) => ({ method: 'GET', path: `/v1/tenants/${t}/instances/${c.name}` }), expect: READ_STAFF },
  { action: 'instance.action', setup: (t) => instance(t), request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/instances/${c.name}/stop?wait=10` }), expect: STAFF_INSIDE },
  // The fake driver cannot redeploy: 422 after authorization, which is what this table checks.
  { action: 'instance.deploy', setup: (t) => instance(t), request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/instances/${c.name}/redeploy`, body: { code: 'x' } }), expect: ADMIN_INSIDE },
  // Streams: the fake driver has none, so an authorised call ends in 422 (exec and console are WebSocket routes; a plain GET is refused after authorization).
  { action: 'instance.logs', setup: (t) => instance(t), request: (t, c) => ({ method: 'GET', path: `/v1/tenants/${t}/instances/${c.name}/logs` }), expect: STAFF_INSIDE },
  { action: 'instance.exec', setup: (t) => instance(t), request: (t, c) => ({ method: 'GET', path: `/v1/tenants/${t}/instances/${c.name}/exec?cmd=id` }), expect: ADMIN_INSIDE },
  { action: 'instance.console', setup: (t) => instance(t), request: (t, c) => ({ method: 'GET', path: `/v1/tenants/${t}/instances/${c.name}/console` }), expect: ADMIN_INSIDE },
  { action: 'instance.delete', setup: (t) => instance(t), request: (t, c) => ({ method: 'DELETE', path: `/v1/tenants/${t}/instances/${c.name}?wait=10` }), expect: ADMIN_INSIDE },
  { action: 'site.create', request: (t) => ({ method: 'POST', path: `/v1/tenants/${t}/sites`, body: { hostname: `${fresh('h')}.example`, target: { kind: 'static', root: 'www' } } }), expect: ADMIN_INSIDE },
  { action: 'site.list', request: (t) => ({ method: 'GET', path: `/v1/tenants/${t}/sites` }), expect: READ_STAFF },
  { action: 'site.read', setup: site, request: (t, c) => ({ method: 'GET', path: `/v1/tenants/${t}/sites/${c.host}` }), expect: READ_STAFF },
  { action: 'site.delete', setup: site, request: (t, c) => ({ method: 'DELETE', path: `/v1/tenants/${t}/sites/${c.host}` }), expect: ADMIN_INSIDE },
  // A PEM that does not parse is a 422 after authorization, which is what this table checks.
  { action: 'certificate.create', request: (t) => ({ method: 'POST', path: `/v1/tenants/${t}/certificates`, body: { certificate: 'x', key: 'y' } }), expect: ADMIN_INSIDE },
  { action: 'certificate.issue', setup: site, request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/certificates/local-ca`, body: { hostnames: [c.host] } }), expect: ADMIN_INSIDE },
  { action: 'certificate.issue (acme)', setup: site, request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/certificates/acme`, body: { hostnames: [c.host] } }), expect: ADMIN_INSIDE },
  { action: 'certificate.list', request: (t) => ({ method: 'GET', path: `/v1/tenants/${t}/certificates` }), expect: READ_STAFF },
  { action: 'certificate.read', setup: certificate, request: (t, c) => ({ method: 'GET', path: `/v1/tenants/${t}/certificates/${c.id}` }), expect: READ_STAFF },
  { action: 'certificate.delete', setup: certificate, request: (t, c) => ({ method: 'DELETE', path: `/v1/tenants/${t}/certificates/${c.id}` }), expect: ADMIN_INSIDE },
  { action: 'snapshot.create', setup: (t) => instance(t), request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/instances/${c.name}/snapshots?wait=10`, body: { name: fresh('s') } }), expect: STAFF_INSIDE },
  { action: 'snapshot.list', request: (t) => ({ method: 'GET', path: `/v1/tenants/${t}/snapshots` }), expect: READ_STAFF },
  { action: 'snapshot.restore', setup: withSnapshot, request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/instances/${c.name}/snapshots/${c.snap}/restore?wait=10` }), expect: ADMIN_INSIDE },
  // The fake driver cannot clone: 422 after authorization, which is what this table checks.
  { action: 'instance.clone', setup: withSnapshot, request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/instances/${c.name}/snapshots/${c.snap}/clone?wait=10`, body: { name: fresh('c') } }), expect: ADMIN_INSIDE },
  // The fake driver cannot move: 422 after authorization, which is what this table checks.
  { action: 'instance.move', setup: (t) => instance(t), request: (t, c) => ({ method: 'POST', path: `/v1/tenants/${t}/instances/${c.name}/move`, body: { target: { url: 'http://127.0.0.1:1', token: 'x' } } }), expect: PROVIDER_INSIDE },
  { action: 'instance.receive', request: (t) => ({ method: 'POST', path: `/v1/tenants/${t}/instances/${fresh('r')}/receive`, body: { level: 'os', source: null, limits: { vcpus: 1, memoryMiB: 64, diskMiB: 0 }, config: {}, sites: [], from: 'roles' } }), expect: PROVIDER_INSIDE },
  { action: 'snapshot.delete', setup: withSnapshot, request: (t, c) => ({ method: 'DELETE', path: `/v1/tenants/${t}/instances/${c.name}/snapshots/${c.snap}` }), expect: ADMIN_INSIDE },
  { action: 'audit.read', request: (t) => ({ method: 'GET', path: `/v1/audit/entries?tenant=${t}` }), expect: AUDIT_READERS },
  { action: 'alert.read', request: (t) => ({ method: 'GET', path: `/v1/alerts?tenant=${t}` }), expect: AUDIT_READERS },
  { action: 'audit.export', request: (t) => ({ method: 'GET', path: `/v1/audit/export?tenant=${t}` }), expect: AUDIT_READERS },
  {
    action: 'operation.read',
    setup: async (t) => {
      const body = await admin('POST', `/v1/tenants/${t}/instances?wait=10`, { name: fresh('o'), level: 'os' });
      return { op: body.operation.id };
    },
    request: (_t, c) => ({ method: 'GET', path: `/v1/operations/${c.op}` }),
    expect: READ_STAFF,
  },
];

function classify(status: number, code: string | undefined): Outcome | `unexpected ${number}` {
  if (status < 300 || status === 409 || status === 422) return 'ok';
  if (status === 404 && code === 'STRATA_ERR_NOT_FOUND') return 'hidden';
  if (status === 403 && code === 'STRATA_ERR_REASON_REQUIRED') return 'reason';
  if (status === 403) return 'forbidden';
  return `unexpected ${status}`;
}

const big = { instances: 500, vcpus: 500, memoryMiB: 1_000_000, diskMiB: 1_000_000, sites: 500 };

before(async () => {
  d = await TestDaemon.start({ drivers: [new FakeDriver({ level: 'os' })] });
  tokens.provider = d.adminToken;
  tokens['provider+reason'] = d.adminToken;
  tokens['tenant-admin'] = await d.tenantWithUser('own', 'tenant-admin', big);
  tokens['tenant-member'] = await d.userToken('own-member', 'tenant-member', 'own');
  await d.tenantWithUser('other', 'tenant-admin', big);
  tokens.auditor = await d.userToken('the-auditor', 'auditor');
  // Keep both tenants non-empty: tenant.delete must be refused (409), not succeed and end the test.
  await instance('own');
  await instance('other');
});
after(() => d.close());

describe('role × action × own/other tenant', () => {
  for (const c of CASES) {
    for (const caller of Object.keys(c.expect) as Caller[]) {
      for (const where of ['own', 'other'] as Where[]) {
        const tenantRole = caller === 'tenant-admin' || caller === 'tenant-member';
        const expected: Outcome = where === 'other' && tenantRole ? 'hidden' : c.expect[caller];
        test(`${c.action} by ${caller} on ${where} tenant → ${expected}`, async () => {
          const tenant = where === 'own' ? 'own' : 'other';
          const ctx = c.setup ? await c.setup(tenant) : {};
          const req = c.request(tenant, ctx);
          const res = await d.request(req.method, req.path, {
            token: tokens[caller], body: req.body, ...(caller === 'provider+reason' ? { headers: REASON } : {}),
          });
          assert.equal(classify(res.status, res.body?.error?.code), expected, `${req.method} ${req.path} → ${res.status} ${JSON.stringify(res.body)}`);
          if (expected === 'hidden') {
            // Indistinguishable from a tenant that does not exist.
            const ghost = c.request('no-such-tenant', ctx);
            const g = await d.request(ghost.method, ghost.path, { token: tokens[caller], body: ghost.body });
            assert.equal(g.status, 404);
            assert.equal(res.body.error.message.replace(/other/g, 'no-such-tenant'), g.body.error.message);
          }
        });
      }
    }
  }
});

test('provider-wide actions: only a provider-admin creates tenants; the auditor reads only audit', async () => {
  for (const caller of ['tenant-admin', 'tenant-member', 'auditor'] as Caller[]) {
    const r = await d.request('POST', '/v1/tenants', { token: tokens[caller], body: { name: fresh('t') } });
    assert.equal(r.status, 403, caller);
  }
  assert.equal((await d.request('POST', '/v1/tenants', { body: { name: fresh('t') } })).status, 201);
  assert.equal((await d.request('GET', '/v1/info', { token: tokens.auditor })).status, 403);
  assert.equal((await d.request('GET', '/v1/tenants', { token: tokens.auditor })).status, 403);
  assert.equal((await d.request('GET', '/v1/audit/entries', { token: tokens.auditor })).status, 200);
  const listed = await d.request('GET', '/v1/tenants', { token: tokens['tenant-member'] });
  assert.deepEqual(listed.body.items.map((t: { name: string }) => t.name), ['own'], 'a tenant lists only itself');
});

test('the forwards of moved sites are the provider\'s alone', async () => {
  for (const c of [{ method: 'GET', path: '/v1/forwards' }, { method: 'DELETE', path: '/v1/forwards/none.example' }]) {
    for (const caller of ['tenant-admin', 'tenant-member', 'auditor'] as Caller[]) {
      assert.equal((await d.request(c.method, c.path, { token: tokens[caller] })).status, 403, `${caller} ${c.method} ${c.path}`);
    }
    const r = await d.request(c.method, c.path);
    assert.equal(r.status, c.method === 'GET' ? 200 : 404, `provider ${c.method} ${c.path}`);
  }
});

test('listeners are the provider\'s alone; the local CA certificate is for every tenant role, not the auditor', async () => {
  const calls = [
    { method: 'GET', path: '/v1/listeners' },
    { method: 'POST', path: '/v1/listeners', body: { name: fresh('l'), address: '127.0.0.1', port: 1, protocol: 'http' } },
    { method: 'DELETE', path: '/v1/listeners/no-such' },
  ];
  for (const c of calls) {
    for (const caller of ['tenant-admin', 'tenant-member', 'auditor'] as Caller[]) {
      const r = await d.request(c.method, c.path, { token: tokens[caller], body: c.body });
      assert.equal(r.status, 403, `${caller} ${c.method} ${c.path}`);
    }
    const r = await d.request(c.method, c.path, { body: c.body });
    assert.ok(r.status < 300 || r.status === 404 || r.status === 422, `provider ${c.method} ${c.path} → ${r.status}`);
  }
  for (const caller of ['provider', 'tenant-admin', 'tenant-member'] as Caller[]) {
    assert.equal((await d.request('GET', '/v1/certificates/ca', { token: tokens[caller] })).status, 200, caller);
  }
  assert.equal((await d.request('GET', '/v1/certificates/ca', { token: tokens.auditor })).status, 403);
});

test('images: tenant staff and providers list them; only a provider-admin imports', async () => {
  for (const caller of ['provider', 'tenant-admin', 'tenant-member'] as Caller[]) {
    assert.equal((await d.request('GET', '/v1/images', { token: tokens[caller] })).status, 200, caller);
  }
  assert.equal((await d.request('GET', '/v1/images', { token: tokens.auditor })).status, 403);
  const body = { name: 'img', path: '/nonexistent' };
  for (const caller of ['tenant-admin', 'tenant-member', 'auditor'] as Caller[]) {
    const r = await d.request('POST', '/v1/images', { token: tokens[caller], body });
    assert.equal(r.status, 403, caller);
    assert.equal(r.body.error.code, 'STRATA_ERR_FORBIDDEN');
  }
  // Authorised; the fake driver cannot import.
  const ok = await d.request('POST', '/v1/images', { token: tokens.provider, body });
  assert.equal(ok.body.error.code, 'STRATA_ERR_UNSUPPORTED');
});

test("a provider-admin's reason lands in the audit log, where the tenant reads it", async () => {
  const { name } = await instance('own');
  const r = await d.request('POST', `/v1/tenants/own/instances/${name}/stop?wait=10`, { headers: { 'x-strata-reason': 'ticket 4711: customer asked' } });
  assert.equal(r.status, 200);
  const seen = await d.request('GET', '/v1/audit/entries?limit=10000', { token: tokens['tenant-member'] });
  const entry = seen.body.items.map((x: any) => x.entry).find((e: any) => e.action === 'instance.stop' && e.target === `own/${name}`);
  assert.ok(entry, 'the tenant sees the entry');
  assert.equal(entry.reason, 'ticket 4711: customer asked');
  assert.equal(entry.actor.role, 'provider-admin');
  const others = await d.request('GET', '/v1/audit/entries?limit=10000', { token: tokens['tenant-member'] });
  assert.ok(others.body.items.every((x: any) => x.entry.tenantId === seen.body.items[0].entry.tenantId), 'and only its own entries');
});
