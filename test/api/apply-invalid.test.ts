/**
 * A file is checked whole before anything changes: unknown fields, bad types,
 * unknown kinds, references that do not resolve, another tenant's objects, an
 * object named twice, the caller's rights and the quotas — each answered with
 * the document (0-based) and the field, and the daemon left exactly as it was
 * (no object made, no audit entry but the refusal's), even when the file's other documents are fine.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

let d: TestDaemon;
let ta: string;
let member: string;
const reason = { 'x-strata-reason': 'apply test' };

before(async () => {
  d = await TestDaemon.start({ drivers: [new FakeDriver({ level: 'os' })] });
  ta = await d.tenantWithUser('ta', 'tenant-admin', { instances: 2 });
  member = await d.userToken('ta-member', 'tenant-member', 'ta');
  await d.tenantWithUser('tb');
  const site = await d.request('POST', '/v1/tenants/tb/sites', { headers: reason, body: { hostname: 'b.test', target: { kind: 'static', root: 'www' } } });
  assert.equal(site.status, 201, JSON.stringify(site.body));
});
after(() => d.close());

/** A valid document that must not be made when the file is refused. */
const fine = { kind: 'Instance', tenant: 'ta', name: 'fine', level: 'os' };

async function refused(documents: unknown[], expect: { status: number; document: number; field?: string; code?: string }, token?: string) {
  const size = (await d.request('GET', '/v1/audit/head')).body.size;
  const r = await d.request('POST', '/v1/apply', { headers: reason, ...(token ? { token } : {}), body: { documents } });
  assert.equal(r.status, expect.status, JSON.stringify(r.body));
  if (expect.code) assert.equal(r.body.error.code, expect.code);
  if (expect.field !== undefined) {
    assert.ok(r.body.error.details.issues.some((i: { document: number; field: string }) => i.document === expect.document && i.field === expect.field), JSON.stringify(r.body.error));
  } else {
    assert.equal(r.body.error.details.document, expect.document, JSON.stringify(r.body.error));
  }
  assert.match(r.body.error.message, new RegExp(`^document ${expect.document}`));
  assert.equal((await d.request('GET', '/v1/tenants/ta/instances/fine')).status, 404, 'nothing made');
  // The refused call itself is audited, as every refused change is; nothing else is.
  const entries = (await d.request('GET', `/v1/audit/entries?from=${size}`)).body.items;
  assert.deepEqual(entries.map(({ entry }: { entry: { action: string; result: string } }) => [entry.action, entry.result]), [['apply', 'error']]);
  return r.body.error;
}

test('unknown fields, bad types and unknown kinds: 400 naming the document and the field', async () => {
  await refused([fine, { kind: 'Instance', tenant: 'ta', name: 'x', level: 'os', colour: 'red' }], { status: 400, document: 1, field: 'colour' });
  await refused([fine, { kind: 'Instance', tenant: 'ta', name: 'x', level: 'os', limits: { memoryMiB: 'lots' } }], { status: 400, document: 1, field: 'limits.memoryMiB' });
  await refused([fine, { kind: 'Tenant', name: 'ta', quota: { vcpus: 2, gpus: 1 } }], { status: 400, document: 1, field: 'quota.gpus' });
  await refused([fine, { kind: 'Volume', name: 'v' }], { status: 400, document: 1, field: 'kind' });
  await refused([fine, { kind: 'Instance', tenant: 'ta', name: 'x', level: 'os', config: { restart: 'always' } }], { status: 400, document: 1, field: 'config.restart' });
});

test('references that do not resolve: 400 naming the document and the field', async () => {
  await refused([fine, { kind: 'Site', tenant: 'ta', hostname: 'a.test', target: { kind: 'instance', instance: 'ghost', port: 80 } }], { status: 400, document: 1, field: 'target.instance' });
  await refused([fine, { kind: 'Site', tenant: 'ta', hostname: 'a.test', target: { kind: 'static', root: 'www' }, listeners: ['nowhere'] }], { status: 400, document: 1, field: 'listeners' });
  await refused([fine, { kind: 'Certificate', tenant: 'ta', hostnames: ['not-a-site.test'], source: 'local-ca' }], { status: 400, document: 1, field: 'hostnames' });
  await refused([{ kind: 'Instance', tenant: 'nobody', name: 'x', level: 'os' }, fine], { status: 400, document: 0, field: 'tenant' });
  await refused([fine, { kind: 'Site', tenant: 'ta', hostname: 'a.test', target: { kind: 'static', root: '../tb' } }], { status: 400, document: 1, field: 'target.root' });
  await refused([fine, { kind: 'Instance', tenant: 'ta', name: 'fine', level: 'os' }], { status: 400, document: 1, field: 'name' });
});

test("another tenant's objects: refused whole, for a tenant's token and for the provider", async () => {
  await refused([fine, { kind: 'Instance', tenant: 'tb', name: 'x', level: 'os' }], { status: 400, document: 1, field: 'tenant' }, ta);
  await refused([fine, { kind: 'Tenant', name: 'tb' }], { status: 400, document: 1, field: 'name' }, ta);
  await refused([fine, { kind: 'Site', tenant: 'ta', hostname: 'b.test', target: { kind: 'static', root: 'www' } }], { status: 400, document: 1, field: 'hostname' }, ta);
  await refused([fine, { kind: 'Site', tenant: 'ta', hostname: 'b.test', target: { kind: 'static', root: 'www' } }], { status: 400, document: 1, field: 'hostname' });
  await refused([fine, { kind: 'Listener', name: 'l', address: '127.0.0.1', port: 1, protocol: 'http' }], { status: 400, document: 1, field: 'kind' }, ta);
});

test("the caller's rights and the quotas: refused whole with the document", async () => {
  await refused([fine, { kind: 'Tenant', name: 'ta', quota: { instances: 9 } }], { status: 403, document: 1, code: 'STRATA_ERR_FORBIDDEN' }, ta);
  await refused([fine], { status: 403, document: 0, code: 'STRATA_ERR_FORBIDDEN' }, member);
  await refused([fine, { ...fine, name: 'two' }, { ...fine, name: 'three' }], { status: 422, document: 0, code: 'STRATA_ERR_QUOTA_EXCEEDED' }, ta);
});

test("a tenant's token applies its own tenant", async () => {
  const r = await d.request('POST', '/v1/apply', { token: ta, body: { documents: [fine] } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await d.request('GET', '/v1/tenants/ta/instances/fine')).status, 200);
});
