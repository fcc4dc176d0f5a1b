/**
 * Per-site log files from the shared access log: lines sorted by tenant and
 * site, partial lines kept for the next read, unrouted requests dropped, and
 * size-based rotation keeping a bounded number of old files — for the shared
 * log too, under a real gateway's workers writing to it.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SiteLogs, siteLogFile } from '../../../src/control/front-door/site-logs.js';
import { startGateway } from '../../../src/gateway/index.js';
import { SqliteStore } from '../../../src/store/sqlite.js';
import { tempDir } from '../../support/temp.js';

const dir = tempDir('site-logs');

test('sorts lines per tenant and site, keeps partial lines, drops unrouted ones, rotates by size', () => {
  const store = new SqliteStore(join(dir, 'strata.db'));
  const t = store.createTenant({ name: 'acme', quota: { instances: 1, vcpus: 1, memoryMiB: 1, diskMiB: 1, sites: 1 } });
  const log = join(dir, 'access.log');
  writeFileSync(log, '{"site":"old.test","tenant":"x"}\n'); // before start: not replayed
  const logs = new SiteLogs({ accessLogPath: log, dir: join(dir, 'sites'), store, maxBytes: 300, keep: 2 });
  const line = (site: string, n: number) => JSON.stringify({ site, tenant: site === '-' ? '-' : t.id, status: 200, n });
  appendFileSync(log, `${line('a.test', 1)}\n${line('-', 2)}\n${line('*.w.test', 3)}\n${line('a.test', 4).slice(0, 10)}`);
  logs.drain();
  const a = siteLogFile(join(dir, 'sites'), t.id, 'a.test');
  assert.deepEqual(readFileSync(a, 'utf8').trim().split('\n').map((l) => JSON.parse(l).n), [1]);
  assert.ok(existsSync(join(dir, 'sites', t.id, '_.w.test.log')), 'by the tenant id, never its name');
  appendFileSync(log, `${line('a.test', 4).slice(10)}\n`);
  logs.drain();
  assert.deepEqual(readFileSync(a, 'utf8').trim().split('\n').map((l) => JSON.parse(l).n), [1, 4], 'the split line joined');
  for (let i = 5; i < 40; i++) appendFileSync(log, `${line('a.test', i)}\n`);
  logs.stop();
  assert.ok(existsSync(`${a}.1`) && existsSync(`${a}.2`) && !existsSync(`${a}.3`), 'two rotated files kept');
  assert.ok(readFileSync(a).length <= 300);
  const all = [`${a}.2`, `${a}.1`, a].flatMap((f) => readFileSync(f, 'utf8').trim().split('\n').map((l) => JSON.parse(l).n as number));
  assert.deepEqual(all, [...all].sort((x, y) => x - y), 'order kept across rotations');
  assert.equal(all.at(-1), 39);
  store.close();
});

test('the shared access log rotates under live workers: renamed, reopened by every worker, no line lost or copied twice', async () => {
  const root = join(dir, 'live');
  mkdirSync(join(root, 'www'), { recursive: true });
  writeFileSync(join(root, 'www', 'index.html'), 'hi\n');
  const store = new SqliteStore(join(root, 'strata.db'));
  const t = store.createTenant({ name: 'shop', quota: { instances: 1, vcpus: 1, memoryMiB: 1, diskMiB: 1, sites: 1 } });
  const accessLog = join(root, 'access.log');
  const gw = await startGateway({
    listeners: [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [{ hostname: 'shop.test', tenantId: t.id, target: { kind: 'static', root: join(root, 'www') } }],
  }, { workers: 2, accessLog: { path: accessLog } });
  const logs = new SiteLogs({ accessLogPath: accessLog, dir: join(root, 'sites'), store, accessMaxBytes: 4096, keep: 3, reopen: () => gw.reopenAccessLog() });
  const port = gw.addresses()[0]!.port;
  const get = (n: number): Promise<number> => new Promise((resolve, reject) => {
    http.get({ host: '127.0.0.1', port, path: `/?n=${n}`, headers: { host: 'shop.test' }, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    }).on('error', reject);
  });
  const total = 600;
  let rotations = 0;
  try {
    for (let n = 0; n < total; n += 20) {
      const statuses = await Promise.all(Array.from({ length: 20 }, (_, i) => get(n + i)));
      assert.ok(statuses.every((x) => x === 200));
      const before = existsSync(`${accessLog}.1`) ? statSync(`${accessLog}.1`).ino : null;
      await logs.tick(); // what the timer does: copy, and rotate when past the limit
      if (existsSync(`${accessLog}.1`) && statSync(`${accessLog}.1`).ino !== before) rotations++;
    }
  } finally {
    await gw.close(); // workers flush what they buffer
    logs.stop();
  }
  assert.ok(rotations >= 3, `the shared log rotated (${rotations} times)`);
  assert.ok(existsSync(`${accessLog}.3`) && !existsSync(`${accessLog}.4`), 'three rotated files kept');
  // The live file was started anew by the workers after the last rotation.
  assert.ok(statSync(accessLog).size < statSync(`${accessLog}.1`).size + 4096);
  const site = siteLogFile(join(root, 'sites'), t.id, 'shop.test');
  const seen = [site, `${site}.1`, `${site}.2`, `${site}.3`, `${site}.4`, `${site}.5`].filter(existsSync)
    .flatMap((f) => readFileSync(f, 'utf8').trim().split('\n').map((l) => Number(new URL(JSON.parse(l).url, 'http://x').searchParams.get('n'))));
  assert.equal(seen.length, total, 'every request copied exactly once into the site log');
  assert.equal(new Set(seen).size, total);
  store.close();
});
