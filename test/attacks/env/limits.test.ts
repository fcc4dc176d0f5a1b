/**
 * Denial-of-service attempts from env tenant code: an infinite loop, deep
 * recursion, a heap bomb, a promise flood and a timer flood are each cut off,
 * while a neighbour on the same isolate host keeps answering — measured by
 * requests to the neighbour that all succeed during the attack. Then whole
 * host processes die: they are replaced and their tenants serve again, and a
 * tenant that keeps crashing hosts is moved to a host of its own.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { HELLO, http, launch, loadWhile, logOf, startEnv, type Launched, type TestEnv } from '../../levels/env/helpers.js';
import { until } from '../../support/until.js';

const ATTACKS: Record<string, { code: string; expect: RegExp }> = {
  'infinite loop': { code: `export default { fetch() { for (;;) {} } }`, expect: /CPU-time limit/ },
  'infinite loop after an await': { code: `export default { async fetch(req, env) { await env.KV.get('x'); for (;;) {} } }`, expect: /CPU-time limit/ },
  'deep recursion': { code: `export default { fetch() { const f = (n) => f(n + 1) + 1; return new Response(String(f(0))) } }`, expect: /Maximum call stack/ },
  'heap bomb': { code: `export default { fetch() { const a = []; for (;;) a.push(new Array(1e5).fill(Math.random())) } }`, expect: /memory limit|CPU-time limit/ },
  'array buffer bomb': { code: `export default { fetch() { const a = []; for (;;) a.push(new Uint8Array(1 << 24)) } }`, expect: /allocation failed|memory limit|CPU-time limit/ },
  'promise flood': { code: `export default { async fetch() { for (;;) await null } }`, expect: /CPU-time limit/ },
  'timer flood': { code: `export default { fetch() { for (let i = 0; ; i++) setTimeout(() => {}, 30000) } }`, expect: /too many pending timers/ },
};

describe('env limits: attacks are cut off and the neighbour keeps serving', () => {
  let env: TestEnv;
  let neighbour: Launched;
  before(async () => {
    env = await startEnv({ hosts: 1 });
    neighbour = await launch(env, 'neighbour', HELLO);
  });
  after(async () => { await env.close(); });

  for (const [name, attack] of Object.entries(ATTACKS)) {
    test(name, async () => {
      const attacker = await launch(env, 'attacker', attack.code, { cpuMs: 50 }, { memoryMiB: 32 });
      assert.equal((await env.driver.inspect(attacker.id))!.info!.host, (await env.driver.inspect(neighbour.id))!.info!.host, 'same host');
      const statuses: number[] = [];
      const load = await loadWhile(neighbour.url, 4, async () => {
        for (let i = 0; i < 3; i++) statuses.push((await http(attacker.url, { timeoutMs: 20_000 })).status);
      });
      assert.ok(statuses.every((s) => s >= 500), `attacker got ${statuses.join(',')}`);
      assert.deepEqual(load.failed, [], 'every neighbour request succeeded');
      assert.ok(load.ok > 0, 'the neighbour answered during the attack');
      await until(() => logOf(env, attacker.id).some((e) => attack.expect.test(e.message)));
      // The attacker's instance is reset, not dead: a benign request path still answers afterwards.
      await env.driver.redeploy(attacker.id, { code: HELLO });
      assert.equal((await http(`${attacker.url}/ok`)).body, 'hello /ok');
    });
  }
});

describe('env host crashes', () => {
  let env: TestEnv;
  before(async () => { env = await startEnv({ hosts: 2, crashStrikes: 2 }); });
  after(async () => { await env.close(); });

  test('a killed host is replaced and its tenants serve again', async () => {
    const a = await launch(env, 'crash-a', HELLO);
    const before = (await env.driver.inspect(a.id))!.info!;
    process.kill(before.pid as number, 'SIGKILL');
    await until(async () => {
      const now = (await env.driver.inspect(a.id))?.info;
      return now?.pid !== undefined && now.pid !== before.pid;
    });
    assert.equal((await http(`${a.url}/again`)).body, 'hello /again');
    await until(() => env.driver.hosts().filter((h) => h.dedicatedTo === null).length === 2);
  });

  test('a tenant whose requests keep crashing hosts gets a host of its own', async () => {
    const bad = await launch(env, 'crashy', `export default { async fetch() { await new Promise((r) => setTimeout(r, 10000)); return new Response('x') } }`);
    const good = await launch(env, 'innocent', HELLO);
    for (let strike = 0; strike < 2; strike++) {
      await until(async () => (await env.driver.inspect(bad.id))?.info?.pid !== undefined);
      const pid = (await env.driver.inspect(bad.id))!.info!.pid as number;
      const pending = http(bad.url);
      await new Promise((r) => setTimeout(r, 100));
      process.kill(pid, 'SIGKILL');
      assert.equal((await pending).status, 502);
    }
    await until(async () => (await env.driver.inspect(bad.id))?.info?.dedicatedHost === true);
    const badHost = (await env.driver.inspect(bad.id))!.info!.host;
    const goodInfo = (await env.driver.inspect(good.id))!.info!;
    assert.notEqual(goodInfo.host, badHost);
    assert.equal(goodInfo.dedicatedHost, false);
    assert.equal((await http(good.url)).status, 200);
    assert.ok(env.driver.hosts().some((h) => h.dedicatedTo === 'crashy'));
  });
});
