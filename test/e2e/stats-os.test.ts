/**
 * Stats of a real os container through the API and the CLI: a busy loop shows
 * as CPU cores in use (never above the instance's 1 vCPU cap) and as CPU time
 * that grows; 48 MiB written to its tmpfs show as memory against its 128 MiB
 * limit; HTTP answers it sends show as network bytes; a file it writes shows
 * as disk used. Another tenant's token gets the 404 it gets for nothing.
 * Nothing is left on the machine.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { OsDriver } from '../../src/levels/os/driver.js';
import { builtinImages, claimSlot, httpGet, leftovers, testDriverOptions, waitFor200 } from '../levels/os/helpers.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';
import { until } from '../support/until.js';

const options = testDriverOptions(await claimSlot());
const MIB = 1024 * 1024;
const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));
let driver: OsDriver;
let d: TestDaemon;
let token: string;
let other: string;
let id: string;
let address: string;

before(async () => {
  await builtinImages();
  driver = new OsDriver(options);
  d = await TestDaemon.start({ drivers: [driver] });
  token = await d.tenantWithUser('acme', 'tenant-admin', { instances: 2, vcpus: 4, memoryMiB: 1024 });
  other = await d.tenantWithUser('rival', 'tenant-admin');
  const l = await as('POST', '/v1/tenants/acme/instances?wait=30', { name: 'web', level: 'os', source: 'busybox', limits: { vcpus: 1, memoryMiB: 128 }, config: { volumeMiB: 64 } });
  assert.equal(l.body.operation?.status, 'succeeded', JSON.stringify(l.body));
  id = l.body.instance.id;
  address = l.body.instance.info.address;
});

after(async () => {
  await driver.run(id, ['sh', '-c', 'kill $(cat /tmp/busy.pid)']).catch(() => undefined);
  await d.request('DELETE', '/v1/tenants/acme/instances/web?wait=30', { token });
  await d.close();
  assert.deepEqual(await leftovers(options), { containers: [], mounts: [], links: [], cgroups: [], firewall: [], instances: [] });
});

const as = (method: string, path: string, body?: unknown) => d.request(method, path, { token, ...(body !== undefined ? { body } : {}) });
const stats = async (): Promise<any> => {
  const r = await as('GET', '/v1/tenants/acme/instances/web/stats');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
};

test('a busy loop shows as CPU cores and time, within the 1 vCPU cap', async () => {
  const idle = await stats();
  assert.equal(idle.cpu.limitCores, 1);
  assert.ok(idle.cpu.cores !== null && idle.cpu.cores < 0.5, `an idle httpd uses little CPU: ${idle.cpu.cores}`);
  const loop = await driver.run(id, ['sh', '-c', 'while :; do :; done </dev/null >/dev/null 2>&1 & echo $! > /tmp/busy.pid']);
  assert.equal(loop.exitCode, 0, loop.stderr);
  let last: any;
  // The loop gets what the loaded machine leaves it (a fair share at load 12 on 2 cores is ~0.17): the figure must show it, never past the cap.
  await until(async () => {
    last = await stats();
    assert.ok(last.cpu.cores <= 1.15, `at most the cap of 1 vCPU (+ rounding): ${last.cpu.cores}`);
    return last.cpu.cores >= 0.15;
  }, { ms: 30_000, every: 300, what: () => `cores >= 0.15 with a busy loop, last ${JSON.stringify(last?.cpu)}` });
  assert.ok(last.cpu.seconds > idle.cpu.seconds, `CPU time grows: ${idle.cpu.seconds} → ${last.cpu.seconds}`);
  const stop = await driver.run(id, ['sh', '-c', 'kill $(cat /tmp/busy.pid)']);
  assert.equal(stop.exitCode, 0, stop.stderr);
  await until(async () => (await stats()).cpu.cores < 0.1, { ms: 30_000, every: 300, what: 'the CPU figure to fall once the loop ends' });
});

test('an allocation shows as memory against the limit; a written file as disk', async () => {
  const before = await stats();
  assert.equal(before.memory.limitBytes, 128 * MIB);
  // 48 MiB in the container's tmpfs (64 MiB at most): memory charged to its cgroup.
  const fill = await driver.run(id, ['dd', 'if=/dev/zero', 'of=/tmp/fill', 'bs=1048576', 'count=48']);
  assert.equal(fill.exitCode, 0, fill.stderr);
  const filled = await stats();
  assert.ok(filled.memory.bytes >= before.memory.bytes + 44 * MIB, `memory ${before.memory.bytes} → ${filled.memory.bytes}`);
  assert.ok(filled.memory.bytes <= 128 * MIB, 'within its limit');
  // 8 MiB on its data volume (the root is read-only). Disk figures are walked at most every 15 s.
  const write = await driver.run(id, ['dd', 'if=/dev/urandom', 'of=/data/blob', 'bs=1048576', 'count=8', 'conv=fsync']);
  assert.equal(write.exitCode, 0, write.stderr);
  await until(async () => (await stats()).disk.usedBytes >= before.disk.usedBytes + 8 * MIB, { ms: 30_000, every: 1000, what: 'disk used to grow by 8 MiB' });
});

test('answers the instance sends show as network bytes; pids count its processes', async () => {
  const before = await stats();
  await waitFor200(address, 8080);
  let body = 0;
  for (let n = 0; n < 20; n++) body += (await httpGet(address, 8080)).body.length;
  const after = await stats();
  assert.ok(after.network.txBytes >= before.network.txBytes + body, `sent ${before.network.txBytes} → ${after.network.txBytes} (bodies ${body})`);
  assert.ok(after.network.rxBytes > before.network.rxBytes + 20 * 16, `received ${before.network.rxBytes} → ${after.network.rxBytes}`);
  assert.ok(after.pids >= 1);
});

test("the tenant list has it; another tenant's token gets a 404", async () => {
  const list = await as('GET', '/v1/tenants/acme/stats');
  assert.deepEqual(list.body.items.map((i: any) => `${i.tenant}/${i.name}`), ['acme/web']);
  const all = await d.request('GET', '/v1/stats', { token: other });
  assert.deepEqual(all.body.items, [], 'a tenant sees only its own tenant in /v1/stats');
  for (const path of ['/v1/tenants/acme/instances/web/stats', '/v1/tenants/acme/stats']) {
    const r = await d.request('GET', path, { token: other });
    assert.equal(r.status, 404, `${path}: ${JSON.stringify(r.body)}`);
  }
  assert.equal((await d.request('GET', '/v1/tenants/acme/stats', { token: null })).status, 401);
});

test('strata stats --no-stream prints a table; --json one line of items', async () => {
  const run = (args: string[]): Promise<{ code: number; stdout: string }> => new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: tempDir('cli-stats'), STRATA_URL: d.url, STRATA_TOKEN: token }, timeout: 30_000,
    }, (err, stdout) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout }));
  });
  const human = await run(['stats', '--no-stream', 'acme']);
  assert.equal(human.code, 0, human.stdout);
  assert.match(human.stdout, /^INSTANCE\s+LEVEL\s+STATE\s+CPU %/);
  assert.match(human.stdout, /acme\/web\s+os\s+running\s+\d+\.\d%/);
  const json = await run(['--json', 'stats', '--no-stream', 'acme/web']);
  assert.equal(json.code, 0, json.stdout);
  const lines = json.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const item = JSON.parse(lines[0]!).items[0];
  assert.equal(item.memory.limitBytes, 128 * MIB);
});
