/**
 * Redeploying an env instance through the API: new code serves, no request in
 * flight fails, and the store and audit log follow. Uses the real env driver.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EnvDriver } from '../../src/levels/env/index.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';

const handler = (word: string) => `export default { fetch() { return new Response('${word}') } }`;
const stateDir = tempDir('redeploy');
let d: TestDaemon;
let acme: string;

before(async () => {
  d = await TestDaemon.start({ drivers: [new EnvDriver({ stateDir, hosts: 1 })] });
  acme = await d.tenantWithUser('acme');
});
after(async () => {
  await d.close();
});

test('redeploy swaps the code of a serving env instance without a failed request', async (t) => {
  const info = await d.request('GET', '/v1/info', { token: acme });
  if (!info.body.levels.find((l: { level: string; available: boolean }) => l.level === 'env').available) return t.skip('env level not available here');
  const launched = await d.request('POST', '/v1/tenants/acme/instances?wait=30', { token: acme, body: { name: 'api', level: 'env', config: { code: handler('one') } } });
  assert.equal(launched.status, 200, JSON.stringify(launched.body));
  assert.equal(launched.body.operation.status, 'succeeded', JSON.stringify(launched.body.operation));
  const url = `http://${launched.body.instance.info.address}:${launched.body.instance.info.port}/`;
  assert.equal(await (await fetch(url)).text(), 'one');

  let failures = 0;
  let served = 0;
  let stop = false;
  const load = (async () => {
    while (!stop) {
      const r = await fetch(url).catch(() => null);
      if (r?.status === 200) served++;
      else failures++;
      await r?.text();
    }
  })();
  const r = await d.request('POST', '/v1/tenants/acme/instances/api/redeploy?wait=30', { token: acme, body: { code: handler('two') } });
  assert.equal(r.status, 200);
  assert.equal(r.body.operation.status, 'succeeded', JSON.stringify(r.body.operation));
  await new Promise((res) => setTimeout(res, 100));
  stop = true;
  await load;
  assert.equal(await (await fetch(url)).text(), 'two');
  assert.equal(failures, 0, `${failures} failed requests of ${served + failures}`);
  assert.ok(served > 0);
  const shown = await d.request('GET', '/v1/tenants/acme/instances/api', { token: acme });
  assert.equal(shown.body.config.code, handler('two'));
  const bad = await d.request('POST', '/v1/tenants/acme/instances/api/redeploy?wait=30', { token: acme, body: { code: 'export default {' } });
  assert.equal(bad.body.operation.status, 'failed');
  assert.equal(await (await fetch(url)).text(), 'two', 'bad code is refused and the old code keeps serving');
  assert.equal((await d.request('POST', '/v1/tenants/acme/instances/api/redeploy', { token: acme, body: {} })).status, 400);
});
