/**
 * `strata cert` and `strata listener` against a real daemon with a gateway:
 * issue from the local CA (the tenant taken from the token), print the CA, list,
 * refuse a name that is no site with one line on stderr; add, list and remove a
 * listener.
 */
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { runStrata, type CliRun } from '../support/cli.js';
import { TestDaemon } from '../support/harness.js';
import { freePort } from '../support/net.js';
import { tempDir } from '../support/temp.js';

let d: TestDaemon;
let home: string;
let tenantToken: string;

const strata = (args: string[], token = d.adminToken): Promise<CliRun> => runStrata(args, { url: d.url, token, home });

before(async () => {
  home = tempDir('cli-cert');
  d = await TestDaemon.start({ gateway: { listeners: [{ id: 'https-0', address: '127.0.0.1', port: 0, protocol: 'https' }], options: { workers: 1 } } });
  tenantToken = await d.tenantWithUser('shop', 'tenant-admin');
  const r = await d.request('POST', '/v1/tenants/shop/sites', { token: tenantToken, body: { hostname: 'www.shop.test', target: { kind: 'static', root: 'www' } } });
  assert.equal(r.status, 201);
  mkdirSync(d.docroot('shop', 'www'), { recursive: true });
  writeFileSync(d.docroot('shop', 'www', 'index.html'), 'hi\n');
});
after(async () => {
  await d.close();
});

test('cert issue (tenant from the token), cert ca, cert list; a name that is no site fails with one line', async () => {
  const issued = await strata(['cert', 'issue', 'www.shop.test'], tenantToken);
  assert.equal(issued.code, 0, issued.stderr);
  assert.match(issued.stdout, /names:\s+www\.shop\.test/);
  assert.match(issued.stdout, /source:\s+local-ca/);
  const ca = await strata(['cert', 'ca'], tenantToken);
  assert.equal(ca.code, 0);
  assert.match(ca.stdout, /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
  const listed = await strata(['cert', 'list', 'shop'], tenantToken);
  assert.match(listed.stdout, /www\.shop\.test\s+local-ca\s+active/);
  const refused = await strata(['cert', 'issue', 'nope.shop.test'], tenantToken);
  assert.notEqual(refused.code, 0);
  assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
  assert.match(refused.stderr, /not a site of tenant 'shop'/);
  const provider = await strata(['cert', 'issue', 'www.shop.test']);
  assert.notEqual(provider.code, 0);
  assert.match(provider.stderr, /--tenant/);
});

test('listener add, list, remove', async () => {
  const port = await freePort('127.0.0.3');
  const added = await strata(['listener', 'add', 'ip3', `http://127.0.0.3:${port}`, '--default-site', 'www.shop.test']);
  assert.equal(added.code, 0, added.stderr);
  const listed = await strata(['listener', 'list']);
  assert.match(listed.stdout, /https-0\s+https\s+127\.0\.0\.1\s+\d+\s+-\s+command-line/);
  assert.match(listed.stdout, new RegExp(`ip3\\s+http\\s+127\\.0\\.0\\.3\\s+${port}\\s+www\\.shop\\.test\\s+api`));
  const res = await fetch(`http://127.0.0.3:${port}/`);
  assert.equal(await res.text(), 'hi\n', 'the default site answers a bare-IP request');
  assert.equal((await strata(['listener', 'remove', 'ip3'])).code, 0);
  const denied = await strata(['listener', 'list'], tenantToken);
  assert.notEqual(denied.code, 0);
});
