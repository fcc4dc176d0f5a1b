/**
 * Per-site log files from the shared access log: lines sorted by tenant and
 * site, partial lines kept for the next read, unrouted requests dropped, and
 * size-based rotation keeping a bounded number of old files.
 */
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { SiteLogs, siteLogFile } from '../../src/control/site-logs.js';
import { SqliteStore } from '../../src/store/sqlite.js';

const dir = mkdtempSync(join(tmpdir(), 'strata-site-logs-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('sorts lines per tenant and site, keeps partial lines, drops unrouted ones, rotates by size', () => {
  const store = new SqliteStore(join(dir, 'strata.db'));
  const t = store.createTenant({ name: 'acme', quota: { instances: 1, vcpus: 1, memoryMiB: 1, diskMiB: 1, sites: 1 } });
  const log = join(dir, 'access.log');
  writeFileSync(log, '{"site":"old.test","tenant":"x"}\n'); // before start: not replayed
  const logs = new SiteLogs({ accessLogPath: log, dir: join(dir, 'sites'), store, maxBytes: 300, keep: 2 });
  const line = (site: string, n: number) => JSON.stringify({ site, tenant: site === '-' ? '-' : t.id, status: 200, n });
  appendFileSync(log, `${line('a.test', 1)}\n${line('-', 2)}\n${line('*.w.test', 3)}\n${line('a.test', 4).slice(0, 10)}`);
  logs.drain();
  const a = siteLogFile(join(dir, 'sites'), 'acme', 'a.test');
  assert.deepEqual(readFileSync(a, 'utf8').trim().split('\n').map((l) => JSON.parse(l).n), [1]);
  assert.ok(existsSync(join(dir, 'sites', 'acme', '_.w.test.log')));
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
