/**
 * Instances through the API, over the fake driver: lifecycle and its refusals,
 * operations and ?wait, quotas under concurrency, idempotency keys, the event
 * stream's scoping.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';

let d: TestDaemon;
let driver: FakeDriver;
let acme: string;

before(async () => {
  driver = new FakeDriver({ level: 'os' });
  d = await TestDaemon.start({ drivers: [driver] });
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
