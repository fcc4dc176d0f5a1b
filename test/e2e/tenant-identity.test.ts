/**
 * Tenants are known by their ids, never their names: a tenant deleted and
 * created again under the same name starts empty — its static site does not
 * serve the old tenant's files, and nothing the old one held (docroot, site
 * logs, KV, guard baselines, snapshot store) is left where the new one, or
 * anyone, could find it; or, when the provider asks, it is kept aside in
 * quarantine. Data dirs of an earlier Strata, keyed by name, are moved to ids
 * at start, and a deleted tenant's leftovers there are not inherited either.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvDriver } from '../../src/levels/env/driver.js';
import { KvStores } from '../../src/levels/env/kv.js';
import { SqliteStore } from '../../src/store/sqlite.js';
import { TestDaemon } from '../support/harness.js';
import { viaGateway } from '../support/net.js';
import { tempDir } from '../support/temp.js';

const reason = { 'x-strata-reason': 'tenant identity test' };
const HTTP = [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' as const }];
let d: TestDaemon;
let dataDir: string;
let port: number;

async function until(what: () => boolean | Promise<boolean>, label: string, ms = 10_000): Promise<void> {
  for (const end = Date.now() + ms; !(await what()); await sleep(25)) if (Date.now() > end) assert.fail(`timed out: ${label}`);
}

before(async () => {
  dataDir = tempDir('tenant-ids');
  d = await TestDaemon.start({ dataDir, drivers: [new EnvDriver({ stateDir: join(dataDir, 'env'), hosts: 1 })], gateway: { listeners: HTTP, options: { workers: 1 } } });
  port = d.daemon.services.gateway!.addresses()[0]!.port;
});
after(async () => {
  await d.close();
});

/** A tenant with a static site holding `body`, served once (so its site log has a line), its docroot baselined by the guard, and a KV entry. */
async function populated(name: string, body: string): Promise<string> {
  assert.equal((await d.request('POST', '/v1/tenants', { body: { name } })).status, 201);
  const id = d.daemon.services.store.getTenantByName(name)!.id;
  mkdirSync(d.docroot(name, 'www'), { recursive: true });
  writeFileSync(d.docroot(name, 'www', 'index.html'), body);
  const site = await d.request('POST', `/v1/tenants/${name}/sites`, { body: { hostname: `www.${name}.test`, target: { kind: 'static', root: 'www' } }, headers: reason });
  assert.equal(site.status, 201);
  await until(async () => (await viaGateway(port, `www.${name}.test`)).body === body, 'served');
  // The workers write the access log in 4 KiB chunks: enough requests for one.
  await until(async () => {
    for (let i = 0; i < 10; i++) await viaGateway(port, `www.${name}.test`);
    return existsSync(join(dataDir, 'logs', 'sites', id, `www.${name}.test.log`));
  }, 'the site log');
  await until(() => d.daemon.integrity.monitor.scopes().includes(`docroot:${id}/www`), 'the docroot baselined under the tenant id');
  const kv = new KvStores(join(dataDir, 'env', 'tenants'));
  kv.put({ tenantId: id, namespace: 'default', quotaBytes: 1 << 20 }, 'secret', `${name}'s secret`);
  kv.close();
  return id;
}

async function emptied(name: string, query = ''): Promise<void> {
  assert.equal((await d.request('DELETE', `/v1/tenants/${name}/sites/www.${name}.test`, { headers: reason })).status, 204);
  assert.equal((await d.request('DELETE', `/v1/tenants/${name}${query}`)).status, 204);
}

const heldBy = (id: string): string[] => [
  join(dataDir, 'docroots', id), join(dataDir, 'logs', 'sites', id), join(dataDir, 'env', 'tenants', id),
].filter(existsSync);

test('a tenant deleted and created again under its name starts empty: nothing of the old one is served, kept or watched', { timeout: 60_000 }, async () => {
  const old = await populated('tx', '<h1>the old tx</h1>');
  await emptied('tx');
  assert.deepEqual(heldBy(old), [], 'docroot, site logs and KV file removed');
  assert.ok(!d.daemon.integrity.monitor.scopes().some((s) => s.includes(old)), 'no guard scope of the old tenant');

  // Same name, new tenant: its static site of the same hostname and root has nothing to serve.
  assert.equal((await d.request('POST', '/v1/tenants', { body: { name: 'tx' } })).status, 201);
  const fresh = d.daemon.services.store.getTenantByName('tx')!.id;
  assert.notEqual(fresh, old);
  const site = await d.request('POST', '/v1/tenants/tx/sites', { body: { hostname: 'www.tx.test', target: { kind: 'static', root: 'www' } }, headers: reason });
  assert.equal(site.status, 201);
  await sleep(300);
  const seen = await viaGateway(port, 'www.tx.test');
  assert.equal(seen.status, 404, `the new tx serves: ${seen.body}`);
  assert.ok(!seen.body.includes('the old tx'));
  const kv = new KvStores(join(dataDir, 'env', 'tenants'));
  assert.equal(kv.get({ tenantId: fresh, namespace: 'default', quotaBytes: 1 << 20 }, 'secret'), null, "the old tenant's KV is not the new one's");
  kv.close();
  assert.ok(!existsSync(join(dataDir, 'logs', 'sites', fresh, 'www.tx.test.log')) ||
    !readFileSync(join(dataDir, 'logs', 'sites', fresh, 'www.tx.test.log'), 'utf8').includes(old), 'no old log line under the new tenant');
  const alerts = await d.request('GET', '/v1/alerts?tenant=tx');
  assert.deepEqual(alerts.body.items, []);
});

test('quarantine=true keeps what a deleted tenant held, out of every path a tenant or route uses', { timeout: 60_000 }, async () => {
  const id = await populated('ty', '<h1>ty</h1>');
  await emptied('ty', '?quarantine=true');
  assert.deepEqual(heldBy(id), []);
  const kept = readdirSync(join(dataDir, 'quarantine')).filter((n) => n.startsWith(`${id}-`));
  assert.equal(kept.length, 1);
  assert.equal(readFileSync(join(dataDir, 'quarantine', kept[0]!, 'docroots', 'www', 'index.html'), 'utf8'), '<h1>ty</h1>');
  assert.ok(existsSync(join(dataDir, 'quarantine', kept[0]!, 'env-kv', 'kv.sqlite')));
  assert.ok(existsSync(join(dataDir, 'quarantine', kept[0]!, 'site-logs', 'www.ty.test.log')));
});

test("a data dir keyed by names (an earlier Strata's) is moved to ids at start; a deleted tenant's leftovers are inherited by no one", { timeout: 60_000 }, async () => {
  const dir = tempDir('name-keyed');
  const store = new SqliteStore(join(dir, 'strata.db'));
  const acme = store.createTenant({ name: 'acme', quota: { instances: 1, vcpus: 1, memoryMiB: 64, diskMiB: 64, sites: 2 } });
  store.createSite({ tenantId: acme.id, hostname: 'www.acme.test', target: { kind: 'static', root: 'www' } });
  store.close();
  for (const [name, body] of [['acme', '<h1>acme</h1>'], ['gone', '<h1>a deleted tenant</h1>']] as const) {
    mkdirSync(join(dir, 'docroots', name, 'www'), { recursive: true });
    writeFileSync(join(dir, 'docroots', name, 'www', 'index.html'), body);
    mkdirSync(join(dir, 'logs', 'sites', name), { recursive: true });
    writeFileSync(join(dir, 'logs', 'sites', name, `www.${name}.test.log`), '{}\n');
  }
  for (let run = 0; run < 2; run++) { // the second start finds nothing left to move
    const daemon = await TestDaemon.start({ dataDir: dir, gateway: { listeners: HTTP, options: { workers: 1 } } });
    try {
      const p = daemon.daemon.services.gateway!.addresses()[0]!.port;
      await until(async () => (await viaGateway(p, 'www.acme.test')).body === '<h1>acme</h1>', "acme's site served from its id's docroot");
      assert.ok(existsSync(join(dir, 'docroots', acme.id, 'www', 'index.html')));
      assert.ok(existsSync(join(dir, 'logs', 'sites', acme.id, 'www.acme.test.log')));
      assert.deepEqual(readdirSync(join(dir, 'docroots')), [acme.id], 'no name-keyed directory left');
      if (run === 0) {
        // A new tenant takes the deleted tenant's name: it gets none of its files.
        assert.equal((await daemon.request('POST', '/v1/tenants', { body: { name: 'gone' } })).status, 201);
        assert.equal((await daemon.request('POST', '/v1/tenants/gone/sites', { body: { hostname: 'www.gone.test', target: { kind: 'static', root: 'www' } }, headers: reason })).status, 201);
        await sleep(300);
        assert.equal((await viaGateway(p, 'www.gone.test')).status, 404);
      }
    } finally {
      await daemon.close();
    }
  }
  const quarantined = readdirSync(join(dir, 'quarantine'));
  assert.equal(quarantined.length, 1);
  assert.match(quarantined[0]!, /^name-gone-/);
  assert.equal(readFileSync(join(dir, 'quarantine', quarantined[0]!, 'docroots', 'www', 'index.html'), 'utf8'), '<h1>a deleted tenant</h1>');
});
