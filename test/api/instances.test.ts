/**
 * Instances through the API, over the fake driver: lifecycle and its refusals,
 * operations and ?wait, quotas under concurrency, idempotency keys, the event
 * stream's scoping; clones from snapshots and the restart policy's validation.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { InstanceSpec } from '../../src/levels/driver.js';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

/** A fake that can clone: it creates the new instance and remembers what from. */
class CloningFake extends FakeDriver {
  readonly clones: Array<{ spec: InstanceSpec; from: { instanceId: string; snapshotId: string } }> = [];
  constructor() {
    super({ level: 'os', supports: ['pause', 'resume', 'snapshot', 'restore', 'clone'] });
  }
  async clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    await this.create(spec);
    this.clones.push({ spec, from });
  }
}

let d: TestDaemon;
let driver: CloningFake;
let acme: string;

before(async () => {
  driver = new CloningFake();
  d = await TestDaemon.start({ drivers: [driver, new FakeDriver({ level: 'emu' })] });
  acme = await d.tenantWithUser('acme', 'tenant-admin', { instances: 5, vcpus: 4, memoryMiB: 4096, diskMiB: 100_000, sites: 3 });
});
after(() => d.close());

const as = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
  d.request(method, path, { token: acme, ...(body !== undefined ? { body } : {}), ...(headers ? { headers } : {}) });

test('launch → running; stop, start, pause, resume, restart; refusals name the state', async () => {
  const r = await as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'web', level: 'os', limits: { vcpus: 1, memoryMiB: 256 } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.operation.status, 'succeeded');
  const show = async () => (await as('GET', '/v1/tenants/acme/instances/web')).body.state;
  assert.equal(await show(), 'running');

  const resume = await as('POST', '/v1/tenants/acme/instances/web/resume');
  assert.equal(resume.status, 409);
  assert.equal(resume.body.error.code, 'STRATA_ERR_INVALID_STATE_TRANSITION');
  assert.match(resume.body.error.message, /cannot resume an instance that is running/);

  for (const [action, state] of [['pause', 'paused'], ['resume', 'running'], ['stop', 'stopped'], ['start', 'running'], ['restart', 'running']] as const) {
    const a = await as('POST', `/v1/tenants/acme/instances/web/${action}?wait=10`);
    assert.equal(a.status, 200, `${action}: ${JSON.stringify(a.body)}`);
    assert.equal(await show(), state, action);
  }
  const bogus = await as('POST', '/v1/tenants/acme/instances/web/explode');
  assert.equal(bogus.status, 400);
});

test('a driver failure marks the instance failed and the operation says why', async () => {
  await as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'flaky', level: 'os', start: false });
  const inst = (await as('GET', '/v1/tenants/acme/instances/flaky')).body;
  driver.failOn('start', { id: inst.id, error: new Error('out of luck') });
  const r = await as('POST', '/v1/tenants/acme/instances/flaky/start?wait=10');
  assert.equal(r.status, 200);
  assert.equal(r.body.operation.status, 'failed');
  assert.match(r.body.operation.error.message, /out of luck/);
  assert.equal((await as('GET', '/v1/tenants/acme/instances/flaky')).body.state, 'failed');
  await as('DELETE', '/v1/tenants/acme/instances/flaky?wait=10');
});

test('operations: 202 without wait, then GET ?wait returns it finished', async () => {
  const r = await as('POST', '/v1/tenants/acme/instances', { name: 'later', level: 'os' });
  assert.equal(r.status, 202);
  const op = await as('GET', `/v1/operations/${r.body.operation.id}?wait=10`);
  assert.equal(op.body.operation.status, 'succeeded');
  const del = await as('DELETE', '/v1/tenants/acme/instances/later?wait=10');
  assert.equal(del.body.operation.status, 'succeeded');
  assert.equal((await as('GET', '/v1/tenants/acme/instances/later')).status, 404);
  assert.equal(await driver.inspect(r.body.instance.id), null, 'the driver let go of it');
});

test('concurrent launches never exceed the quota', async () => {
  await d.request('POST', '/v1/tenants', { body: { name: 'race', quota: { instances: 3, vcpus: 100, memoryMiB: 100_000, diskMiB: 100_000 } } });
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => d.request('POST', `/v1/tenants/race/instances`, { body: { name: `r${i}`, level: 'os' }, headers: { 'x-strata-reason': 'test' } })),
  );
  const accepted = results.filter((r) => r.status === 202 || r.status === 200).length;
  const refused = results.filter((r) => r.status === 422 && r.body.error.code === 'STRATA_ERR_QUOTA_EXCEEDED');
  assert.equal(accepted, 3);
  assert.equal(refused.length, 17);
  assert.equal(refused[0]!.body.error.details.resource, 'instances');
  const t = await d.request('GET', '/v1/tenants/race');
  assert.equal(t.body.usage.instances, 3);
  const lower = await d.request('PATCH', '/v1/tenants/race', { body: { quota: { instances: 2 } } });
  assert.equal(lower.status, 422);
  assert.equal(lower.body.error.code, 'STRATA_ERR_QUOTA_BELOW_USAGE');
});

test('vCPU and memory quotas count declared limits', async () => {
  const r = await as('POST', '/v1/tenants/acme/instances', { name: 'huge', level: 'os', limits: { vcpus: 64 } });
  assert.equal(r.status, 422);
  assert.equal(r.body.error.details.resource, 'vcpus');
});

test('an Idempotency-Key replays the first answer and refuses a different request', async () => {
  const key = { 'idempotency-key': 'site-once' };
  const body = { hostname: 'Www.Acme.EXAMPLE.', target: { kind: 'static', root: 'www' } };
  const first = await as('POST', '/v1/tenants/acme/sites', body, key);
  assert.equal(first.status, 201);
  assert.equal(first.body.hostname, 'www.acme.example', 'hostnames are normalised');
  const again = await as('POST', '/v1/tenants/acme/sites', body, key);
  assert.equal(again.status, 201);
  assert.equal(again.headers.get('idempotent-replayed'), 'true');
  assert.deepEqual(again.body, first.body);
  const other = await as('POST', '/v1/tenants/acme/sites', { ...body, hostname: 'other.example' }, key);
  assert.equal(other.status, 409);
  assert.equal(other.body.error.code, 'STRATA_ERR_IDEMPOTENCY_MISMATCH');
  const escape = await as('POST', '/v1/tenants/acme/sites', { hostname: 'x.example', target: { kind: 'static', root: '../../etc' } });
  assert.equal(escape.status, 400);
});

test('the event stream shows a tenant only its own events', async () => {
  const other = await d.tenantWithUser('quiet', 'tenant-admin');
  const ctrl = new AbortController();
  const res = await fetch(`${d.url}/v1/events?category=lifecycle`, { headers: { authorization: `Bearer ${other}` }, signal: ctrl.signal });
  assert.equal(res.status, 200);
  const mine = await fetch(`${d.url}/v1/events?category=lifecycle`, { headers: { authorization: `Bearer ${acme}` }, signal: ctrl.signal });
  const reader = mine.body!.getReader();
  const otherReader = res.body!.getReader();
  await as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'evented', level: 'os' });
  let text = '';
  while (!text.includes('"to":"running"')) text += new TextDecoder().decode((await reader.read()).value);
  assert.match(text, /event: instance.state/);
  assert.match(text, /"instance":"evented"/);
  const leaked = await Promise.race([otherReader.read().then((r) => new TextDecoder().decode(r.value)), new Promise<string>((r) => setTimeout(() => r(''), 300))]);
  assert.ok(!leaked.includes('evented'), 'another tenant saw nothing of it');
  ctrl.abort();
});

test('an unknown level answers 422 naming it unavailable', async () => {
  const r = await as('POST', '/v1/tenants/acme/instances', { name: 'v', level: 'vm' });
  assert.equal(r.status, 422);
  assert.equal(r.body.error.code, 'STRATA_ERR_LEVEL_UNAVAILABLE');
});

test('an Idempotency-Key on launch starts one instance, however often it is sent', async () => {
  const key = { 'idempotency-key': 'launch-once' };
  const bodies = await Promise.all([1, 2, 3].map(() => as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'once', level: 'os' }, key)));
  for (const b of bodies) assert.equal(b.status, 200, JSON.stringify(b.body));
  assert.equal(new Set(bodies.map((b) => b.body.operation.id)).size, 1, 'one operation');
  assert.equal(bodies[0]!.body.instance.state, 'running');
  await as('DELETE', '/v1/tenants/acme/instances/once?wait=10');
});

test('clone: a new running instance from a snapshot, quota-checked, audited, idempotent', async () => {
  const cloner = await d.tenantWithUser('cloner', 'tenant-admin', { instances: 2, vcpus: 4, memoryMiB: 4096, diskMiB: 100_000, sites: 1 });
  const by = (method: string, path: string, body?: unknown, headers?: Record<string, string>) =>
    d.request(method, path, { token: cloner, ...(body !== undefined ? { body } : {}), ...(headers ? { headers } : {}) });
  const base = '/v1/tenants/cloner/instances';
  assert.equal((await by('POST', `${base}?wait=10`, { name: 'orig', level: 'os', source: 'busybox', limits: { memoryMiB: 128 }, config: { port: 8080, restart: 'always' } })).status, 200);
  assert.equal((await by('POST', `${base}/orig/snapshots?wait=10`, { name: 'snap' })).status, 200);

  const key = { 'idempotency-key': 'clone-once' };
  const r = await by('POST', `${base}/orig/snapshots/snap/clone?wait=10`, { name: 'copy' }, key);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal(r.body.operation.status, 'succeeded');
  assert.equal(r.body.operation.kind, 'instance.clone');
  const copy = (await by('GET', `${base}/copy`)).body;
  const orig = (await by('GET', `${base}/orig`)).body;
  assert.equal(copy.state, 'running');
  assert.notEqual(copy.id, orig.id);
  assert.deepEqual([copy.level, copy.source, copy.limits, copy.config], [orig.level, orig.source, orig.limits, orig.config]);
  const made = driver.clones.at(-1)!;
  const snapshots = (await by('GET', `${base}/orig/snapshots`)).body.items as Array<{ id: string; name: string }>;
  assert.deepEqual(made.from, { instanceId: orig.id, snapshotId: snapshots.find((x) => x.name === 'snap')!.id });
  assert.equal(made.spec.id, copy.id);
  assert.deepEqual(made.spec.config, { port: 8080 }, 'the restart policy is the control plane\'s, not the driver\'s');

  const replay = await by('POST', `${base}/orig/snapshots/snap/clone?wait=10`, { name: 'copy' }, key);
  assert.equal(replay.headers.get('idempotent-replayed'), 'true');
  assert.equal(driver.clones.filter((c) => c.spec.name === 'copy').length, 1, 'one clone, however often the key is sent');

  const overQuota = await by('POST', `${base}/orig/snapshots/snap/clone`, { name: 'third' });
  assert.equal(overQuota.status, 422, JSON.stringify(overQuota.body));
  assert.equal(overQuota.body.error.code, 'STRATA_ERR_QUOTA_EXCEEDED');
  assert.equal((await by('DELETE', `${base}/copy?wait=10`)).status, 200);
  const taken = await by('POST', `${base}/orig/snapshots/snap/clone`, { name: 'orig' });
  assert.equal(taken.status, 409, JSON.stringify(taken.body));
  assert.equal(taken.body.error.code, 'STRATA_ERR_CONFLICT');
  const missing = await by('POST', `${base}/orig/snapshots/nope/clone`, { name: 'x' });
  assert.equal(missing.status, 404);

  const audit = ((await d.request('GET', '/v1/audit/entries?tenant=cloner&limit=1000')).body.items as Array<{ entry: { action: string; target: string; details?: { from?: string } } }>).map((r) => r.entry);
  const entry = audit.find((e) => e.action === 'instance.clone');
  assert.ok(entry, JSON.stringify(audit.map((e) => e.action)));
  assert.equal(entry.target, 'cloner/copy');
  assert.equal(entry.details?.from, 'cloner/orig@snap');
  assert.ok(audit.some((e) => e.action === 'instance.clone.done'));
  await by('DELETE', `${base}/orig?wait=10`);
});

test('clone where the level cannot: 422 STRATA_ERR_UNSUPPORTED, nothing created', async () => {
  const r = await as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'vm1', level: 'emu', start: false });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await as('POST', '/v1/tenants/acme/instances/vm1/snapshots?wait=10', { name: 's' })).status, 200);
  const c = await as('POST', '/v1/tenants/acme/instances/vm1/snapshots/s/clone', { name: 'vm2' });
  assert.equal(c.status, 422);
  assert.equal(c.body.error.code, 'STRATA_ERR_UNSUPPORTED');
  assert.equal((await as('GET', '/v1/tenants/acme/instances/vm2')).status, 404);
  await as('DELETE', '/v1/tenants/acme/instances/vm1?wait=10');
});

test('the restart policy is validated at the edge and kept in the config', async () => {
  const bad = await as('POST', '/v1/tenants/acme/instances', { name: 'pol', level: 'os', config: { restart: 'sometimes' } });
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
  assert.equal(bad.body.error.code, 'STRATA_ERR_VALIDATION');
  assert.equal(bad.body.error.details.issues[0].field, 'config.restart');
  assert.equal((await as('GET', '/v1/tenants/acme/instances/pol')).status, 404, 'nothing was created');
  const ok = await as('POST', '/v1/tenants/acme/instances?wait=10', { name: 'pol', level: 'os', config: { restart: 'on-failure' } });
  assert.equal(ok.status, 200);
  const shown = (await as('GET', '/v1/tenants/acme/instances/pol')).body;
  assert.equal(shown.config.restart, 'on-failure');
  assert.deepEqual(driver.specOf(shown.id)?.config, {});
  await as('DELETE', '/v1/tenants/acme/instances/pol?wait=10');
});
