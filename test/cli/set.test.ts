/**
 * `strata instance set`, `strata site set` and `strata user set` run as
 * `bin/strata` child processes against a live daemon (os level: a fake that
 * reconfigures as os does): each change round-trips to what `show` prints,
 * the answer says live or next-restart per field, `--if-match` with a stale
 * ETag changes nothing and exits non-zero with the precondition code.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TestDaemon } from '../support/harness.js';
import { ReconfiguringFake } from '../support/reconfiguring-fake.js';

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));

let d: TestDaemon;
let token: string;
const strata = (args: string[]): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', STRATA_URL: d.url, STRATA_TOKEN: token },
    }, (error, stdout, stderr) => resolve({ code: error ? Number(error.code ?? 1) : 0, stdout, stderr }));
  });
const json = async (args: string[]): Promise<any> => {
  const r = await strata(['--json', ...args]);
  assert.equal(r.code, 0, `strata ${args.join(' ')}: ${r.stderr}`);
  return JSON.parse(r.stdout);
};

before(async () => {
  d = await TestDaemon.start({ drivers: [new ReconfiguringFake()] });
  token = await d.tenantWithUser('acme', 'tenant-admin', { instances: 3, vcpus: 4, memoryMiB: 2048, diskMiB: 10_000, sites: 3 });
  await json(['instance', 'launch', 'acme/web', '--level', 'os', '--source', 'busybox']);
});
after(() => d.close());

test('instance set: limits and config round-trip; the answer says how each took effect; --if-match guards it', async () => {
  const r = await json(['instance', 'set', 'acme/web', '--cpus', '2', '--memory', '512', '--config', 'port=8080', '--restart', 'always']);
  assert.deepEqual(r.applied, { 'limits.vcpus': 'live', 'limits.memoryMiB': 'live', 'config.port': 'next-restart', 'config.restart': 'live' });
  const shown = await json(['instance', 'show', 'acme/web']);
  assert.deepEqual(shown.limits, { vcpus: 2, memoryMiB: 512, diskMiB: 1024 });
  assert.deepEqual(shown.config, { port: 8080, restart: 'always' });

  const human = await strata(['instance', 'set', 'acme/web', '--unset-config', 'port', '--if-match', r.etag]);
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, /config\.port: next-restart/);
  assert.equal((await json(['instance', 'show', 'acme/web'])).config.port, undefined);

  const stale = await strata(['instance', 'set', 'acme/web', '--vcpus', '1', '--if-match', r.etag]);
  assert.notEqual(stale.code, 0);
  assert.match(stale.stderr, /STRATA_ERR_PRECONDITION_FAILED/);
  assert.equal((await json(['instance', 'show', 'acme/web'])).limits.vcpus, 2, 'nothing changed');

  const nothing = await strata(['instance', 'set', 'acme/web']);
  assert.equal(nothing.code, 2, 'a usage error: nothing to change');
  const over = await strata(['instance', 'set', 'acme/web', '--memory', '4096']);
  assert.match(over.stderr, /STRATA_ERR_QUOTA_EXCEEDED/);
});

test('site set: a new target and listeners round-trip; user set: a new role', async () => {
  await json(['site', 'add', 'acme', 'shop.acme.test', '--static', 'www']);
  const retargeted = await json(['site', 'set', 'acme', 'shop.acme.test', '--instance', 'web', '--port', '8080']);
  assert.deepEqual(retargeted.target, { kind: 'instance', instance: 'web', port: 8080 });
  const redirect = await json(['site', 'set', 'acme', 'shop.acme.test', '--redirect', 'https://elsewhere.test/', '--status', '302', '--if-match', retargeted.etag]);
  assert.deepEqual((await json(['site', 'show', 'acme', 'shop.acme.test'])).target, { kind: 'redirect', to: 'https://elsewhere.test/', status: 302 });
  const stale = await strata(['site', 'set', 'acme', 'shop.acme.test', '--static', 'www', '--if-match', retargeted.etag]);
  assert.match(stale.stderr, /STRATA_ERR_PRECONDITION_FAILED/);
  assert.notEqual(redirect.etag, retargeted.etag);
  assert.equal((await strata(['site', 'set', 'acme', 'shop.acme.test'])).code, 2, 'nothing to change');

  await json(['user', 'create', 'bo', '--role', 'tenant-member', '--tenant', 'acme']);
  const promoted = await json(['user', 'set', 'bo', '--role', 'tenant-admin']);
  assert.equal(promoted.role, 'tenant-admin');
  assert.equal((await json(['user', 'show', 'bo'])).role, 'tenant-admin');
  const escalate = await strata(['user', 'set', 'bo', '--role', 'provider-admin']);
  assert.match(escalate.stderr, /STRATA_ERR_FORBIDDEN/);
});
