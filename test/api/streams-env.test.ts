/**
 * `logs` of an env instance through the API: what its code printed, as text
 * lines (`TIME SOURCE/LEVEL MESSAGE`), the tail, and a follower that sees a new
 * request's output and ends when the instance is deleted.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { EnvDriver } from '../../src/levels/env/index.js';
import { TestDaemon } from '../support/harness.js';
import { http } from '../levels/env/helpers.js';
import { tempDir } from '../support/temp.js';

let d: TestDaemon;
let token: string;
let stateDir: string;

before(async () => {
  stateDir = tempDir('env-logs');
  d = await TestDaemon.start({ drivers: [new EnvDriver({ stateDir })] });
  token = await d.tenantWithUser('acme');
});
after(async () => {
  await d.close();
});

const CODE = "export default { fetch(req) { console.log('visited', new URL(req.url).pathname); console.error('oops'); return new Response('ok') } }";

test('an env instance logs what its code printed; a follower sees new output and ends on delete', { timeout: 60_000 }, async () => {
  const launched = await d.request('POST', '/v1/tenants/acme/instances?wait=30', { token, body: { name: 'fn', level: 'env', config: { code: CODE } } });
  assert.equal(launched.status, 200, JSON.stringify(launched.body));
  const url = `http://127.0.0.1:${launched.body.instance.info.port as number}`;
  assert.equal((await http(`${url}/first`)).status, 200);
  const auth = { authorization: `Bearer ${token}` };
  const logsUrl = `${d.url}/v1/tenants/acme/instances/fn/logs`;
  let text = '';
  for (let i = 0; i < 100 && !/oops/.test(text); i++) {
    text = await (await fetch(logsUrl, { headers: auth })).text();
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.match(text, /^\d{4}-\d\d-\d\dT[\d:.]+Z console\/\w+ visited \/first\n/m);
  assert.match(text, /console\/error oops\n/);
  assert.match(await (await fetch(`${logsUrl}?tail=1`, { headers: auth })).text(), /^\S+ console\/error oops\n$/);

  const follower = await fetch(`${logsUrl}?follow=true&tail=0`, { headers: auth });
  const reader = follower.body!.getReader();
  let followed = '';
  assert.equal((await http(`${url}/second`)).status, 200);
  while (!/visited \/second/.test(followed)) {
    const { value, done } = await reader.read();
    assert.ok(!done, `the follower ended early: ${followed}`);
    followed += Buffer.from(value).toString();
  }
  assert.doesNotMatch(followed, /first/, 'tail=0: only new output');
  const del = await d.request('DELETE', '/v1/tenants/acme/instances/fn?wait=30', { token });
  assert.equal(del.status, 200);
  for (;;) {
    const { done } = await reader.read();
    if (done) break;
  }
});
