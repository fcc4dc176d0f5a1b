/**
 * The guard on env instances: the deployed handler (`code.js`, what a restart
 * would load) is baselined with known-good copies; a write to it behind the
 * driver's back raises the alert and the file is put back, while a redeploy
 * through the API — a change made on purpose — is re-baselined, not reverted.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EnvDriver } from '../../src/levels/env/index.js';
import { TestDaemon } from '../support/harness.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

const stateDir = tempDir('guard-env');
let d: TestDaemon;
let acme: string;
const handler = (text: string): string => `export default { async fetch() { return new Response(${JSON.stringify(text)}) } }`;

before(async () => {
  d = await TestDaemon.start({ drivers: [new EnvDriver({ stateDir, hosts: 1 })] });
  acme = await d.tenantWithUser('acme');
});
after(async () => {
  await d.close();
});

test('a tampered handler file is put back; a redeploy is baselined, not reverted', async () => {
  const launched = await d.request('POST', '/v1/tenants/acme/instances?wait=30', { token: acme, body: { name: 'api', level: 'env', config: { code: handler('one') } } });
  assert.equal(launched.status, 200, JSON.stringify(launched.body));
  const id = launched.body.instance.id as string;
  const scope = `instance:${id}`;
  const code = join(stateDir, 'instances', id, 'code.js');
  const { monitor } = d.daemon.integrity;
  await until(() => monitor.tree(scope), { ms: 10_000, what: 'the baseline' });

  writeFileSync(code, handler('pwned'));
  await until(() => readFileSync(code, 'utf8') === handler('one') || undefined, { ms: 5000, what: 'the handler put back' });
  await d.daemon.services.guard.drained();
  const alert = d.daemon.services.guard.alerts({}).find((a) => a.rule === 'Tampered content recovered' && a.instanceId === id);
  assert.ok(alert);
  assert.equal(alert.fields['file.path'], '/code.js');
  const entries = (await d.request('GET', '/v1/audit/entries?limit=1000')).body.items.map((x: any) => x.entry);
  assert.ok(entries.some((e: any) => e.action === 'guard.recover' && e.result === 'ok' && e.details.restored?.includes('code.js')));

  const alertsBefore = d.daemon.services.guard.alerts({}).length;
  const r = await d.request('POST', '/v1/tenants/acme/instances/api/redeploy?wait=30', { token: acme, body: { code: handler('two') } });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  await until(() => monitor.tree(scope), { ms: 10_000, what: 'the new baseline' });
  await sleep(300);
  await d.daemon.services.guard.drained();
  assert.equal(readFileSync(code, 'utf8'), handler('two'), 'the redeployed code stays');
  assert.equal(d.daemon.services.guard.alerts({}).length, alertsBefore, 'a redeploy raises no alert');
  assert.equal((await monitor.verify(scope)).ok, true);
});
