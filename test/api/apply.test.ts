/**
 * Declarative apply through the API: a file made from nothing, applied again
 * (nothing planned, nothing audited), one field changed in each kind (the plan
 * names exactly that field, and the change goes through the PATCH calls'
 * functions), prune (only with --prune, only in the file's tenants), and
 * export → apply on an empty daemon reproducing the tenant.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { TestDaemon } from '../support/harness.js';
import { freePort } from '../support/net.js';
import { ReconfiguringFake } from '../support/reconfiguring-fake.js';

let d: TestDaemon;
let driver: ReconfiguringFake;
let extraPort: number;
const reason = { 'x-strata-reason': 'apply test' };

const apply = (documents: unknown[], opts: { dryRun?: boolean; prune?: boolean; token?: string; d?: TestDaemon } = {}) =>
  (opts.d ?? d).request('POST', '/v1/apply', {
    headers: reason, ...(opts.token ? { token: opts.token } : {}),
    body: { documents, ...(opts.dryRun ? { dryRun: true } : {}), ...(opts.prune ? { prune: true } : {}) },
  });

const auditSize = async (on = d): Promise<number> => (await on.request('GET', '/v1/audit/head')).body.size;

/** The file every test starts from (each test works on its own tenant). */
function file(tenant: string, port: number) {
  return [
    { kind: 'Tenant', name: tenant, quota: { instances: 4, vcpus: 4, memoryMiB: 2048, diskMiB: 10_000, sites: 4 } },
    { kind: 'User', name: `${tenant}-ops`, role: 'tenant-admin', tenant },
    { kind: 'Listener', name: `${tenant}-l`, address: '127.0.0.1', port, protocol: 'http' },
    { kind: 'Instance', tenant, name: 'web', level: 'os', source: 'debian', limits: { vcpus: 1, memoryMiB: 256, diskMiB: 1024 }, config: { port: 8080 }, restart: 'on-failure' },
    { kind: 'Site', tenant, hostname: `www.${tenant}.test`, target: { kind: 'instance', instance: 'web', port: 8080 }, listeners: [`${tenant}-l`] },
    { kind: 'Site', tenant, hostname: `static.${tenant}.test`, target: { kind: 'static', root: 'www' } },
    { kind: 'Certificate', tenant, hostnames: [`www.${tenant}.test`], source: 'local-ca' },
  ];
}

const kindsOf = (plan: Array<{ action: string; kind: string }>) => plan.map((e) => `${e.action} ${e.kind}`).sort();

before(async () => {
  driver = new ReconfiguringFake();
  d = await TestDaemon.start({ drivers: [driver], gateway: { listeners: [{ id: 'main', address: '127.0.0.1', port: await freePort(), protocol: 'http' }], options: { workers: 1 } } });
  extraPort = await freePort();
});
after(() => d.close());

test('from empty: the plan creates each object, and applying it makes them through the resource calls', async () => {
  const docs = file('one', extraPort);
  const dry = await apply(docs, { dryRun: true });
  assert.equal(dry.status, 200, JSON.stringify(dry.body));
  assert.deepEqual(dry.body.summary, { create: 7, change: 0, replace: 0, delete: 0 });
  assert.equal((await d.request('GET', '/v1/tenants/one')).status, 404, 'a dry run changes nothing');

  const r = await apply(docs);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(kindsOf(r.body.plan), ['create Certificate', 'create Instance', 'create Listener', 'create Site', 'create Site', 'create Tenant', 'create User']);
  assert.equal(r.body.operations.length, 1, 'the launch');
  const web = (await d.request('GET', '/v1/tenants/one/instances/web')).body;
  assert.deepEqual([web.level, web.source, web.limits.memoryMiB, web.config], ['os', 'debian', 256, { port: 8080, restart: 'on-failure' }]);
  const site = (await d.request('GET', '/v1/tenants/one/sites/www.one.test')).body;
  assert.deepEqual([site.target.port, site.listeners, site.instanceId], [8080, ['one-l'], web.id]);
  assert.equal((await d.request('GET', '/v1/users/one-ops')).body.role, 'tenant-admin');
  assert.equal((await d.request('GET', '/v1/tenants/one/certificates')).body.items[0].source, 'local-ca');
  assert.ok((await d.request('GET', '/v1/listeners')).body.items.some((l: { name: string }) => l.name === 'one-l'));
});

test('the same file again plans nothing, changes nothing and audits nothing', async () => {
  const docs = file('one', extraPort);
  const size = await auditSize();
  const r = await apply(docs);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.plan, []);
  assert.deepEqual(r.body.summary, { create: 0, change: 0, replace: 0, delete: 0 });
  assert.equal(await auditSize(), size);
});

test('one field changed in each kind: the plan names exactly it, and apply changes it in place where a PATCH can', async () => {
  const base = file('one', extraPort);
  const cases: Array<{ doc: number; edit: (x: any) => void; field: string; action: string }> = [
    { doc: 0, edit: (x) => { x.quota.vcpus = 3; }, field: 'quota.vcpus', action: 'change' },
    { doc: 1, edit: (x) => { x.role = 'tenant-member'; }, field: 'role', action: 'change' },
    { doc: 3, edit: (x) => { x.limits.memoryMiB = 512; }, field: 'limits.memoryMiB', action: 'change' },
    { doc: 3, edit: (x) => { x.restart = 'always'; }, field: 'restart', action: 'change' },
    { doc: 3, edit: (x) => { x.config.port = 9090; }, field: 'config.port', action: 'change' },
    { doc: 4, edit: (x) => { x.target.port = 8081; }, field: 'target.port', action: 'change' },
    { doc: 3, edit: (x) => { x.source = 'alpine'; }, field: 'source', action: 'replace' },
  ];
  for (const c of cases) {
    const docs = structuredClone(base);
    c.edit(docs[c.doc]);
    const r = await apply(docs, { dryRun: true });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const own = r.body.plan.filter((e: { document: number | null }) => e.document === c.doc);
    assert.equal(own.length, 1, `${c.field}: ${JSON.stringify(r.body.plan)}`);
    assert.equal(own[0].action, c.action, c.field);
    assert.deepEqual(own[0].changes.map((x: { field: string }) => x.field), [c.field]);
  }

  // Carried out: the instance's memory through the level's reconfigure (live on a running instance), the site's port by PATCH.
  const docs = structuredClone(base);
  (docs[3] as any).limits.memoryMiB = 512;
  (docs[4] as any).target.port = 8081;
  const before = (await d.request('GET', '/v1/tenants/one/instances/web')).body;
  const r = await apply(docs);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(r.body.summary, { create: 0, change: 2, replace: 0, delete: 0 });
  assert.deepEqual(r.body.applied, { 'one/web': { 'limits.memoryMiB': 'live' } });
  const now = (await d.request('GET', '/v1/tenants/one/instances/web')).body;
  assert.equal(now.id, before.id, 'changed in place, not made again');
  assert.equal(now.limits.memoryMiB, 512);
  assert.equal(driver.reconfigured.at(-1)!.spec.limits.memoryMiB, 512);
  const site = (await d.request('GET', '/v1/tenants/one/sites/www.one.test')).body;
  assert.deepEqual([site.target.port, site.instanceId], [8081, before.id]);
  assert.deepEqual((await apply(docs)).body.plan, [], 'and then nothing more to do');
});

test('a replaced instance takes the sites following it along; a certificate with other names replaces the old one', async () => {
  const docs = structuredClone(file('one', extraPort));
  (docs[3] as any).limits.memoryMiB = 512;
  (docs[4] as any).target.port = 8081;
  (docs[3] as any).level = 'os';
  (docs[3] as any).source = 'alpine';
  docs[6] = { kind: 'Certificate', tenant: 'one', hostnames: ['www.one.test', 'static.one.test'], source: 'local-ca' };
  const old = (await d.request('GET', '/v1/tenants/one/instances/web')).body;
  const r = await apply(docs);
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.deepEqual(kindsOf(r.body.plan), ['replace Certificate', 'replace Instance', 'replace Site']);
  const site = r.body.plan.find((e: { kind: string }) => e.kind === 'Site');
  assert.match(site.reason, /follows instance one\/web, which is replaced/);
  const web = (await d.request('GET', '/v1/tenants/one/instances/web')).body;
  assert.notEqual(web.id, old.id);
  assert.equal((await d.request('GET', '/v1/tenants/one/sites/www.one.test')).body.instanceId, web.id, 'the site follows the new instance');
  const certs = (await d.request('GET', '/v1/tenants/one/certificates')).body.items;
  assert.deepEqual(certs.map((c: { hostnames: string[] }) => [...c.hostnames].sort()), [['static.one.test', 'www.one.test']]);
  assert.deepEqual((await apply(docs)).body.plan, []);
});

test('prune deletes what the file no longer names, only with prune and only in its tenants', async () => {
  const t2 = [
    { kind: 'Tenant', name: 'two' },
    { kind: 'Instance', tenant: 'two', name: 'a', level: 'os' },
    { kind: 'Instance', tenant: 'two', name: 'b', level: 'os' },
    { kind: 'Site', tenant: 'two', hostname: 'b.two.test', target: { kind: 'instance', instance: 'b', port: 80 } },
  ];
  assert.equal((await apply(t2)).status, 200);
  const fewer = t2.slice(0, 2);
  assert.deepEqual((await apply(fewer, { dryRun: true })).body.plan, [], 'without prune nothing is deleted');
  const dry = await apply(fewer, { dryRun: true, prune: true });
  assert.deepEqual(kindsOf(dry.body.plan), ['delete Instance', 'delete Site']);
  assert.ok(dry.body.plan.every((e: { tenant: string }) => e.tenant === 'two'), 'tenant one is not in the file: untouched');
  const r = await apply(fewer, { prune: true });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  assert.equal((await d.request('GET', '/v1/tenants/two/instances/b')).status, 404);
  assert.equal((await d.request('GET', '/v1/tenants/two/sites/b.two.test')).status, 404);
  assert.equal((await d.request('GET', '/v1/tenants/two/instances/a')).status, 200);
  assert.equal((await d.request('GET', '/v1/tenants/one/instances/web')).status, 200);
});

test('export → apply on an empty daemon reproduces the tenant, and the export then plans nothing there', async () => {
  const exported = await d.request('GET', '/v1/tenants/one/export');
  assert.equal(exported.status, 200, JSON.stringify(exported.body));
  const docs = exported.body.documents;
  assert.deepEqual(docs.map((x: { kind: string }) => x.kind).sort(), ['Certificate', 'Instance', 'Listener', 'Site', 'Site', 'Tenant', 'User']);
  const fresh = await TestDaemon.start({ drivers: [new ReconfiguringFake()], gateway: { listeners: [{ id: 'main', address: '127.0.0.1', port: await freePort(), protocol: 'http' }], options: { workers: 1 } } });
  try {
    // The listener's port is this machine's: the copy takes another free one (the file is edited, as an operator would).
    const listener = docs.find((x: { kind: string }) => x.kind === 'Listener');
    listener.port = await freePort();
    const r = await apply(docs, { d: fresh });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.summary.create, 7);
    const again = await fresh.request('GET', '/v1/tenants/one/export');
    assert.deepEqual(again.body.documents, docs);
    assert.deepEqual((await apply(again.body.documents, { d: fresh })).body.plan, []);
  } finally {
    await fresh.close();
  }
});
