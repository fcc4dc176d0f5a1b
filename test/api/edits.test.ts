/**
 * Edits through the API over a fake driver that can reconfigure: an
 * instance's limits and config (live on a running instance where its level
 * says so, else at the next start; the restart policy always live), a site's
 * target and listeners, a user's role, a tenant's quota; ETags on GET and
 * PATCH, If-Match (412 on a stale tag, success on the current one), bad input
 * (400 naming the field), quota (422), another tenant's object (404), audit.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';
import { ReconfiguringFake } from '../support/reconfiguring-fake.js';

let d: TestDaemon;
let driver: ReconfiguringFake;
let acme: string;
let other: string;

before(async () => {
  driver = new ReconfiguringFake();
  d = await TestDaemon.start({ drivers: [driver, new FakeDriver({ level: 'emu' })] });
  acme = await d.tenantWithUser('acme', 'tenant-admin', { instances: 5, vcpus: 4, memoryMiB: 2048, diskMiB: 100_000, sites: 5 });
  other = await d.tenantWithUser('other', 'tenant-admin');
  const r = await as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'web', level: 'os', limits: { vcpus: 1, memoryMiB: 256 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
});
after(() => d.close());

const as = (method: string, path: string, body?: unknown, headers?: Record<string, string>, token = acme) =>
  d.request(method, path, { token, ...(body !== undefined ? { body } : {}), ...(headers ? { headers } : {}) });

test('instance PATCH: limits live on a running instance, config at the next start, the restart policy live; the driver gets the new spec', async () => {
  const events: Array<{ type: string; data: Record<string, unknown> }> = [];
  const unsubscribe = d.daemon.services.events.subscribe((e) => events.push(e));
  const before = await as('GET', '/v1/tenants/acme/instances/web');
  const tag = before.headers.get('etag');
  assert.match(tag ?? '', /^"in_[^"]+\.\d+"$/);
  const r = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { memoryMiB: 512 }, config: { env: { MODE: 'x' }, restart: 'always' } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.applied, { 'limits.memoryMiB': 'live', 'config.env': 'next-restart', 'config.restart': 'live' });
  assert.equal(r.body.instance.limits.memoryMiB, 512);
  assert.deepEqual(r.body.instance.config, { env: { MODE: 'x' }, restart: 'always' });
  assert.notEqual(r.headers.get('etag'), tag, 'a change moves the ETag');
  unsubscribe();
  const updated = events.find((e) => e.type === 'instance.updated');
  assert.deepEqual(updated?.data.applied, r.body.applied, 'a lifecycle event says what changed and how');
  assert.ok(events.some((e) => e.type === 'audit.appended' || (e.data as { action?: string }).action === 'instance.update'), 'and the audit entry is on the stream');
  const last = driver.reconfigured.at(-1)!;
  assert.deepEqual(last.changed, ['limits.memoryMiB', 'config.env'], 'the restart policy is not the level\'s');
  assert.deepEqual(last.spec.config, { env: { MODE: 'x' } }, 'the driver sees its own config only');
  assert.equal(driver.specOf(last.spec.id)?.limits.memoryMiB, 512);

  // The same change again changes nothing: same ETag, nothing asked of the driver, nothing audited.
  const count = driver.reconfigured.length;
  const again = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { memoryMiB: 512 } });
  assert.deepEqual(again.body.applied, {});
  assert.equal(again.headers.get('etag'), r.headers.get('etag'));
  assert.equal(driver.reconfigured.length, count);

  // null removes a config key; on a stopped instance every level field waits for the next start.
  assert.equal((await as('POST', '/v1/tenants/acme/instances/web/stop?wait=10')).status, 200);
  const stopped = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { vcpus: 2 }, config: { env: null } });
  assert.deepEqual(stopped.body.applied, { 'limits.vcpus': 'next-restart', 'config.env': 'next-restart' });
  assert.deepEqual(stopped.body.instance.config, { restart: 'always' });
  assert.equal((await as('POST', '/v1/tenants/acme/instances/web/start?wait=10')).status, 200);

  const audit = await d.request('GET', '/v1/audit/entries?limit=10000');
  const updates = audit.body.items.map((x: { entry: { action: string } }) => x.entry).filter((e: { action: string }) => e.action === 'instance.update');
  assert.equal(updates.length, 2, 'two changes audited, the no-op not');
  assert.deepEqual(updates[0].details.applied, r.body.applied);
});

test('instance PATCH: If-Match — a stale ETag is 412 and changes nothing; the current one succeeds; another tenant gets 404', async () => {
  const cur = await as('GET', '/v1/tenants/acme/instances/web');
  const tag = cur.headers.get('etag')!;
  const ok = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { vcpus: 1.5 } }, { 'if-match': tag });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const stale = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { vcpus: 0.5 } }, { 'if-match': tag });
  assert.equal(stale.status, 412);
  assert.equal(stale.body.error.code, 'STRATA_ERR_PRECONDITION_FAILED');
  assert.equal(stale.body.error.details.etag, ok.headers.get('etag'));
  assert.equal((await as('GET', '/v1/tenants/acme/instances/web')).body.limits.vcpus, 1.5);
  assert.equal((await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { vcpus: 1 } }, { 'if-match': '*' })).status, 200);

  const foreign = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { vcpus: 2 } }, undefined, other);
  assert.equal(foreign.status, 404);
  assert.equal(foreign.body.error.code, 'STRATA_ERR_NOT_FOUND');
});

test('instance PATCH: bad input is a 400 naming the field; over quota is a 422; nothing changes', async () => {
  const tag = (await as('GET', '/v1/tenants/acme/instances/web')).headers.get('etag');
  for (const [body, field] of [
    [{ limits: { memoryMiB: 1 } }, 'body.limits.memoryMiB'],
    [{ limits: { cpus: 2 } }, 'body.limits'],
    [{}, 'body'],
    [{ config: { restart: 'sometimes' } }, 'config.restart'],
  ] as const) {
    const r = await as('PATCH', '/v1/tenants/acme/instances/web', body);
    assert.equal(r.status, 400, JSON.stringify(r.body));
    assert.ok(r.body.error.details.issues.some((i: { field: string }) => i.field.startsWith(field)), `${JSON.stringify(body)}: ${JSON.stringify(r.body.error)}`);
  }
  const over = await as('PATCH', '/v1/tenants/acme/instances/web', { limits: { memoryMiB: 4096 } });
  assert.equal(over.status, 422);
  assert.equal(over.body.error.code, 'STRATA_ERR_QUOTA_EXCEEDED');
  assert.equal(over.body.error.details.resource, 'memoryMiB');
  assert.equal((await as('GET', '/v1/tenants/acme/instances/web')).headers.get('etag'), tag);
});

test('a level without reconfigure refuses level fields (422) but takes the restart policy', async () => {
  assert.equal((await as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'emu1', level: 'emu', start: false })).status, 200);
  const r = await as('PATCH', '/v1/tenants/acme/instances/emu1', { limits: { vcpus: 2 } });
  assert.equal(r.status, 422);
  assert.equal(r.body.error.code, 'STRATA_ERR_UNSUPPORTED');
  const policy = await as('PATCH', '/v1/tenants/acme/instances/emu1', { config: { restart: 'on-failure' } });
  assert.equal(policy.status, 200, JSON.stringify(policy.body));
  assert.deepEqual(policy.body.applied, { 'config.restart': 'live' });
});

test('site PATCH: target and listeners change, with ETag/If-Match; bad targets 400/404; another tenant 404', async () => {
  const made = await as('POST', '/v1/tenants/acme/sites', { hostname: 'shop.acme.test', target: { kind: 'static', root: 'www' } });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const tag = made.headers.get('etag')!;
  assert.equal((await as('GET', '/v1/tenants/acme/sites/shop.acme.test')).headers.get('etag'), tag);

  const r = await as('PATCH', '/v1/tenants/acme/sites/shop.acme.test', { target: { kind: 'instance', instance: 'web', port: 8080 } }, { 'if-match': tag });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.target, { kind: 'instance', instance: 'web', port: 8080 });
  const web = (await as('GET', '/v1/tenants/acme/instances/web')).body;
  assert.equal(r.body.instanceId, web.id);
  const stale = await as('PATCH', '/v1/tenants/acme/sites/shop.acme.test', { target: { kind: 'redirect', to: 'https://elsewhere.test/' } }, { 'if-match': tag });
  assert.equal(stale.status, 412);
  assert.equal(stale.body.error.code, 'STRATA_ERR_PRECONDITION_FAILED');

  const redirect = await as('PATCH', '/v1/tenants/acme/sites/shop.acme.test', { target: { kind: 'redirect', to: 'https://elsewhere.test/', status: 302 } });
  assert.equal(redirect.status, 200);
  assert.equal(redirect.body.instanceId, null);

  const escape = await as('PATCH', '/v1/tenants/acme/sites/shop.acme.test', { target: { kind: 'static', root: '../other' } });
  assert.equal(escape.status, 400);
  assert.equal(escape.body.error.details.issues[0].field, 'body.target.root');
  const dangling = await as('PATCH', '/v1/tenants/acme/sites/shop.acme.test', { target: { kind: 'instance', instance: 'nope', port: 80 } });
  assert.equal(dangling.status, 404);
  const listener = await as('PATCH', '/v1/tenants/acme/sites/shop.acme.test', { listeners: ['nowhere'] });
  assert.equal(listener.status, 422);
  assert.equal(listener.body.error.code, 'STRATA_ERR_SITE_LISTENER');
  assert.equal((await as('GET', '/v1/tenants/acme/sites/shop.acme.test')).body.target.kind, 'redirect', 'refusals changed nothing');

  const foreign = await as('PATCH', '/v1/tenants/acme/sites/shop.acme.test', { target: { kind: 'static', root: 'www' } }, undefined, other);
  assert.equal(foreign.status, 404);
  const foreignByOwnTenant = await as('PATCH', '/v1/tenants/other/sites/shop.acme.test', { target: { kind: 'static', root: 'www' } }, undefined, other);
  assert.equal(foreignByOwnTenant.status, 404);
});

test("user PATCH: a tenant-admin moves its users between member and admin, never across the tenant line; If-Match; another tenant's user is 404", async () => {
  const made = await as('POST', '/v1/users', { name: 'bo', role: 'tenant-member', tenant: 'acme' });
  assert.equal(made.status, 201, JSON.stringify(made.body));
  const tag = (await as('GET', '/v1/users/bo')).headers.get('etag')!;
  const up = await as('PATCH', '/v1/users/bo', { role: 'tenant-admin' }, { 'if-match': tag });
  assert.equal(up.status, 200, JSON.stringify(up.body));
  assert.equal(up.body.role, 'tenant-admin');
  assert.equal(up.body.tenant, 'acme');
  assert.equal((await as('PATCH', '/v1/users/bo', { role: 'tenant-member' }, { 'if-match': tag })).status, 412);

  const escalate = await as('PATCH', '/v1/users/bo', { role: 'provider-admin' });
  assert.equal(escalate.status, 403);
  const elsewhere = await as('PATCH', '/v1/users/bo', { role: 'tenant-admin', tenant: 'other' });
  assert.equal(elsewhere.status, 404, 'another tenant is not named to a tenant-admin');
  assert.equal((await as('PATCH', '/v1/users/bo', { role: 'auditor', tenant: 'acme' })).status, 400);
  assert.equal((await as('PATCH', '/v1/users/bo', { role: 'tenant-member' }, undefined, other)).status, 404);

  // The provider may cross the line; the last provider-admin keeps its role.
  const auditor = await d.request('PATCH', '/v1/users/bo', { body: { role: 'auditor' } });
  assert.equal(auditor.status, 200, JSON.stringify(auditor.body));
  assert.equal(auditor.body.tenant, null);
  const admins = (await d.request('GET', '/v1/users')).body.items.filter((u: { role: string }) => u.role === 'provider-admin');
  assert.equal(admins.length, 1);
  const last = await d.request('PATCH', `/v1/users/${admins[0].name}`, { body: { role: 'auditor' } });
  assert.equal(last.status, 409);
});

test('tenant PATCH: quota with ETag and If-Match', async () => {
  const cur = await d.request('GET', '/v1/tenants/other');
  const tag = cur.headers.get('etag')!;
  const ok = await d.request('PATCH', '/v1/tenants/other', { body: { quota: { sites: 7 } }, headers: { 'if-match': tag } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.notEqual(ok.headers.get('etag'), tag);
  const stale = await d.request('PATCH', '/v1/tenants/other', { body: { quota: { sites: 8 } }, headers: { 'if-match': tag } });
  assert.equal(stale.status, 412);
  assert.equal((await d.request('GET', '/v1/tenants/other')).body.quota.sites, 7);
});
