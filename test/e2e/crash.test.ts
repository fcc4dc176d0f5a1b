/**
 * SIGKILL the daemon in the middle of creates, deletes and quota updates, then
 * restart it: every acknowledged change is there, quotas still add up, and the
 * audit log still verifies and holds an entry for every acknowledged change.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { verifyDatabase } from '../../src/audit/verify.js';
import { createPublicKey } from 'node:crypto';
import { tempDir } from '../support/temp.js';

const MAIN = new URL('../support/daemon-main.js', import.meta.url).pathname;
const dir = tempDir('crash');

async function boot(): Promise<{ child: ChildProcess; url: string; token: string }> {
  const child = spawn(process.execPath, [MAIN, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', resolve);
    child.once('exit', (c) => reject(new Error(`daemon exited ${c}`)));
  });
  const token = readFileSync(join(dir, 'admin.token'), 'utf8').trim();
  return { child, url: (JSON.parse(line) as { url: string }).url, token };
}

const kill9 = (child: ChildProcess) => new Promise<void>((resolve) => {
  child.once('exit', () => resolve());
  child.kill('SIGKILL');
});

test('kill -9 during creates, deletes and quota updates loses nothing acknowledged', { timeout: 120_000 }, async () => {
  const acknowledged = { tenants: new Set<string>(), instances: new Set<string>(), deleted: new Set<string>(), quota: new Map<string, number>() };
  let { child, url, token } = await boot();
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(url + path, {
      method, headers: { authorization: `Bearer ${token}`, 'x-strata-reason': 'crash test', ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as any };
  };

  for (let round = 0; round < 5; round++) {
    const tenant = `t${round}`;
    const t = await call('POST', '/v1/tenants', { name: tenant, quota: { instances: 8, vcpus: 8, memoryMiB: 8192, sites: 10 } });
    assert.equal(t.status, 201);
    acknowledged.tenants.add(tenant);
    // A burst of work, and a SIGKILL somewhere inside it.
    const work: Promise<void>[] = [];
    let stop = false;
    for (let w = 0; w < 4; w++) {
      work.push((async () => {
        for (let i = 0; !stop && i < 200; i++) {
          try {
            const name = `w${w}-${i}`;
            const c = await call('POST', `/v1/tenants/${tenant}/instances`, { name, level: 'os' });
            if (c.status === 202 || c.status === 200) acknowledged.instances.add(`${tenant}/${name}`);
            if (i % 3 === 2) {
              acknowledged.instances.delete(`${tenant}/${name}`); // uncertain until the delete is acknowledged
              const del = await call('DELETE', `/v1/tenants/${tenant}/instances/${name}`);
              if (del.status === 202 || del.status === 200) acknowledged.deleted.add(`${tenant}/${name}`);
            }
            const q = 8 + ((w + i) % 5);
            const p = await call('PATCH', `/v1/tenants/${tenant}`, { quota: { instances: q } });
            if (p.status === 200) acknowledged.quota.set(tenant, q);
          } catch {
            return; // the daemon is gone
          }
        }
      })());
    }
    await new Promise((r) => setTimeout(r, 150 + round * 60));
    stop = true;
    await kill9(child);
    await Promise.allSettled(work);
    ({ child, url, token } = await boot());

    // Nothing acknowledged is lost, nothing deleted comes back.
    for (const name of acknowledged.tenants) assert.equal((await call('GET', `/v1/tenants/${name}`)).status, 200, name);
    const listed = new Set<string>();
    for (const name of acknowledged.tenants) {
      for (const i of (await call('GET', `/v1/tenants/${name}/instances`)).body.items) listed.add(`${name}/${i.name}`);
      const tenantNow = (await call('GET', `/v1/tenants/${name}`)).body;
      assert.ok(tenantNow.usage.instances <= tenantNow.quota.instances, `usage within quota for ${name}`);
      assert.equal(tenantNow.usage.instances, [...listed].filter((x) => x.startsWith(`${name}/`)).length, 'usage adds up');
    }
    for (const i of acknowledged.instances) assert.ok(listed.has(i), `acknowledged instance ${i} survived`);
    for (const i of acknowledged.deleted) assert.ok(!listed.has(i), `acknowledged delete of ${i} held`);
  }
  assert.ok(acknowledged.instances.size + acknowledged.deleted.size > 20, 'the bursts did real work before each kill');
  // Quotas hold the last acknowledged value or a later one that was in flight; at least they are valid numbers within the range used.
  for (const [tenant] of acknowledged.quota) {
    const q = (await call('GET', `/v1/tenants/${tenant}`)).body.quota.instances;
    assert.ok(q >= 8 && q <= 12, `quota of ${tenant} is one that was written (${q})`);
  }
  // Every acknowledged create has its audit entry.
  const entries = (await call('GET', '/v1/audit/entries?limit=10000')).body.items.map((x: any) => x.entry);
  const audited = new Set(entries.filter((e: any) => e.action === 'instance.create' && e.result === 'ok').map((e: any) => e.target));
  for (const i of [...acknowledged.instances, ...acknowledged.deleted]) assert.ok(audited.has(i), `audit entry for ${i}`);
  await kill9(child);

  const report = verifyDatabase(join(dir, 'strata.db'), createPublicKey(readFileSync(join(dir, 'audit-key.pem'))).export({ type: 'spki', format: 'pem' }).toString());
  assert.equal(report.ok, true, JSON.stringify(report));
});
