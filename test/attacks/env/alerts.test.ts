/**
 * The guard against the env attack suite, live: a real env driver (isolate
 * hosts, sandbox), the isolate-boundary interceptor attached to it, the
 * default ruleset (rules/*.yaml), and an actuator target that only records
 * (so a freeze does not stop the suite).
 *
 * Precision first: a benign handler — KV use within its quota, fetch to its
 * allowlist, timers, console logging, crypto, moderate CPU — serves a few
 * hundred requests and the guard, which sees every one of its boundary calls,
 * raises no alert at all.
 *
 * Effectiveness: each attack of test/attacks/env/{isolation,limits,sandbox}
 * that makes the boundary refuse or cut something off, plus the guard's brief
 * for the env level (fetch outside the allowlist, KV quota hammering), raises
 * the alert named in the table on the attacking instance. An attacker repeats
 * its attack (a single limit hit is what a buggy handler also does; the rule
 * counts them). The attacks the table leaves out are contained inside V8 with
 * nothing crossing the boundary, or are no tenant's doing; `SILENT` says why.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Alert } from '../../../src/guard/actuator.js';
import type { GuardEvent } from '../../../src/core/guard-event.js';
import { Guard } from '../../../src/guard/guard.js';
import { IsolateInterceptor, toGuardEvent } from '../../../src/levels/env/interceptor.js';
import { loadDefaultRuleset } from '../../../src/guard/rules.js';
import { FakeTarget, MemoryAudit, recordingBus } from '../../guard/fakes.js';
import { http, launch, loadWhile, startEnv, type Launched, type TestEnv } from '../../levels/env/helpers.js';
import { until } from '../../support/until.js';

/** A site on loopback the benign handler may fetch (its allowlist names it). */
function startUpstream(): Promise<Server> {
  const server = createServer((req, res) => res.end(`upstream ${req.url}`));
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const BENIGN = (upstream: number): string => `export default { async fetch(request, env) {
  const path = new URL(request.url).pathname;
  console.log('serving', path);
  const n = Number((await env.KV.get('count')) ?? 0) + 1;
  await env.KV.put('count', String(n));
  await env.KV.put('item:' + (n % 20), 'x'.repeat(2000));
  if (n % 7 === 0) await env.KV.delete('item:' + ((n + 3) % 20));
  const listed = await env.KV.list({ prefix: 'item:' });
  const upstream = await (await fetch('http://127.0.0.1:${upstream}/api?n=' + n)).text();
  await new Promise((resolve) => setTimeout(resolve, 2));
  let sum = 0;
  for (let i = 0; i < 50000; i++) sum = (sum + i * i) % 1000003;
  if (n % 10 === 0) console.warn('slow path', n);
  return Response.json({ n, keys: listed.keys.length, upstream, sum, id: crypto.randomUUID() });
} }`;

interface Case {
  /** The attack's title in the env suite, or what the guard's brief names. */
  attack: string;
  rule: string;
  code: string | ((a: Arena) => string);
  config?: Record<string, unknown>;
  /** Requests the attacker sends (each one attempt; default 12). */
  requests?: number;
}

/** The same limits as test/attacks/env/limits.test.ts: 50 ms CPU per run, a 32 MiB heap. */
const LIMITED = { config: { cpuMs: 50 }, limits: { memoryMiB: 32 } };

const CASES: Case[] = [
  // ---- test/attacks/env/limits.test.ts: each cut off by a limit; repeated, "Isolate limit abuse" ----
  { attack: 'infinite loop', rule: 'Isolate limit abuse', code: `export default { fetch() { for (;;) {} } }` },
  { attack: 'infinite loop after an await', rule: 'Isolate limit abuse', code: `export default { async fetch(req, env) { await env.KV.get('x'); for (;;) {} } }` },
  { attack: 'heap bomb', rule: 'Isolate limit abuse', code: `export default { fetch() { const a = []; for (;;) a.push(new Array(1e5).fill(Math.random())) } }` },
  { attack: 'array buffer bomb', rule: 'Isolate limit abuse', code: `export default { fetch() { const a = []; for (;;) a.push(new Uint8Array(1 << 24)) } }` },
  { attack: 'promise flood', rule: 'Isolate limit abuse', code: `export default { async fetch() { for (;;) await null } }` },
  { attack: 'timer flood', rule: 'Isolate limit abuse', code: `export default { fetch() { for (let i = 0; ; i++) setTimeout(() => {}, 30000) } }` },
  // ---- the guard's brief ----
  { attack: 'a handler that never answers, holding its slots', rule: 'Isolate limit abuse', config: { wallMs: 200 },
    code: `export default { fetch() { return new Promise(() => {}) } }` },
  { attack: 'CPU burnt in a timer, after the response', rule: 'Isolate limit abuse', requests: 30,
    code: `export default { fetch() { setTimeout(() => { for (;;) {} }, 0); return new Response('ok') } }` },
  { attack: 'KV quota hammering: writes past the quota, again and again', rule: 'Isolate limit abuse',
    code: `export default { async fetch(req, env) {
      try { for (let i = 0; ; i++) await env.KV.put('fill-' + i, 'x'.repeat(500000)) } catch (e) { return new Response(String(e), { status: 507 }) } } }` },
  { attack: "fetch outside the allowlist: another tenant's port", rule: 'Isolate outbound refused', requests: 1,
    code: (a) => `export default { async fetch() {
      try { await fetch('http://127.0.0.1:${a.neighbour.port}/'); return new Response('reached') } catch (e) { return new Response(String(e), { status: 502 }) } } }` },
  { attack: 'fetch outside the allowlist: a non-HTTP scheme', rule: 'Isolate outbound refused', requests: 1,
    code: `export default { async fetch() { try { await fetch('file:///etc/passwd'); return new Response('read') } catch (e) { return new Response(String(e), { status: 502 }) } } }` },
];

/** Env-suite attacks with no alert, and why that is right. */
const SILENT: Record<string, string> = {
  'a global set by one tenant': 'reads its own globals: each isolate has its own heap, nothing crosses the boundary',
  'prototype tampering': 'rewrites its own isolate\'s built-ins, which is ordinary JavaScript and reaches nobody else',
  'no Node.js API is reachable': '`typeof process` is the feature detection every universal library does, and the constructor escape and import() fail inside V8: the isolate has no such API to refuse at the boundary',
  'KV data: the same key': 'the supervisor scopes every KV call to the caller\'s tenant; code cannot name another tenant, so every call is an ordinary one on its own data',
  'logs: one tenant': 'console output is ordinary; the supervisor files it in the caller\'s own log',
  'Math.random and crypto': 'ordinary randomness calls',
  'deep recursion': 'V8\'s stack limit throws an ordinary RangeError within microseconds: no limit of the platform is reached, no neighbour pays',
  'a killed host is replaced': 'the provider (the test) killed the host with no request in flight: no tenant caused it, and the supervisor replaces the host',
  'the host runs unprivileged': 'tenant code attempts nothing: the test inspects the host process from outside',
};

class Arena {
  env!: TestEnv;
  guard!: Guard;
  neighbour!: Launched;
  upstream!: Server;
  readonly target = new FakeTarget();
  readonly recent: GuardEvent[] = [];

  async open(): Promise<void> {
    this.env = await startEnv({ hosts: 1, crashStrikes: 2 });
    this.upstream = await startUpstream();
    this.guard = new Guard({ ruleset: await loadDefaultRuleset(), target: this.target, audit: new MemoryAudit(), events: recordingBus().bus });
    const driver = this.env.driver;
    // Keeps the last events seen, so a missing alert can say what the guard did see.
    await this.guard.addInterceptor(new IsolateInterceptor({
      observe: (fn) => driver.observe(fn && ((e) => { this.recent.push(toGuardEvent(e)); if (this.recent.length > 2000) this.recent.shift(); fn(e); })),
    }));
    await this.guard.start();
    this.neighbour = await launch(this.env, 'neighbour', `export default { fetch() { return new Response('neighbour') } }`);
  }

  async close(): Promise<void> {
    await this.guard?.stop();
    await this.env?.close();
    await new Promise((resolve) => this.upstream?.close(resolve));
  }

  /** Every alert so far, as "rule @instance" (each attack runs on a fresh instance, so its alerts are its own). */
  raised(): string[] {
    return this.guard.alerts().map((a) => `${a.rule} @${a.instanceId}`);
  }

  /** Waits up to 10 s for an alert of `rule` on `instanceId`; on failure, says what the guard saw of that instance. */
  async alertOn(rule: string, instanceId: string): Promise<Alert> {
    for (const deadline = Date.now() + 10_000; ; await sleep(100)) {
      await this.guard.drained();
      const hit = this.guard.alerts().find((a) => a.rule === rule && a.instanceId === instanceId);
      if (hit) return hit;
      if (Date.now() < deadline) continue;
      const seen = this.recent.filter((e) => e.instanceId === instanceId && e.kind !== 'isolate.call').slice(-8).map((e) => `${e.kind} ${JSON.stringify(e.fields)}`);
      assert.fail(`no '${rule}' alert on ${instanceId}; raised: ${JSON.stringify(this.raised())}; its last events: ${seen.join('\n')}`);
    }
  }
}

const arena = new Arena();

describe('guard on the env attack suite', () => {
  before(async () => arena.open(), { timeout: 60_000 });
  after(async () => arena.close(), { timeout: 60_000 });

  test('precision: a benign handler raises no alert', { timeout: 120_000 }, async () => {
    const received = arena.guard.stats().received;
    const port = (arena.upstream.address() as AddressInfo).port;
    // A generous CPU limit: on a crowded machine a few ms of work can take 50 ms, and a limit hit is not what this test is about.
    const calm = await launch(arena.env, 'calm', BENIGN(port), { outbound: [`127.0.0.1:${port}`], cpuMs: 1000 });
    const load = await loadWhile(calm.url, 4, async () => { await sleep(8000); });
    const last = JSON.parse((await http(calm.url)).body) as { n: number; keys: number; upstream: string };
    assert.deepEqual(load.failed, [], 'every benign request succeeded');
    assert.ok(load.ok >= 50, `served ${load.ok} requests`);
    assert.ok(last.keys > 0 && last.keys <= 20, `KV answered (${last.keys} keys)`);
    assert.match(last.upstream, /^upstream \/api\?n=/);
    await sleep(200);
    await arena.guard.drained();
    assert.ok(arena.guard.stats().received - received > 5 * load.ok, `the guard saw the boundary calls (${arena.guard.stats().received - received})`);
    assert.deepEqual(arena.guard.alerts().map((a) => `${a.rule}: ${a.output}`), []);
  });

  for (const c of CASES) {
    test(`effectiveness: ${c.attack} → ${c.rule}`, { timeout: 90_000 }, async () => {
      const code = typeof c.code === 'function' ? c.code(arena) : c.code;
      const attacker = await launch(arena.env, 'attacker', code, { ...LIMITED.config, ...c.config }, { ...LIMITED.limits, diskMiB: 1 });
      const statuses: number[] = [];
      for (let i = 0; i < (c.requests ?? 12); i++) statuses.push((await http(attacker.url, { timeoutMs: 20_000 })).status);
      assert.ok(statuses.every((s) => s >= 500 || c.attack.startsWith('CPU burnt')), `the attack was refused or cut off: ${statuses.join(',')}`);
      const alert = await arena.alertOn(c.rule, attacker.id);
      assert.equal(alert.tenantId, 'attacker');
      assert.equal(alert.level, 'env');
      assert.ok(!arena.guard.alerts().some((a) => a.tenantId !== 'attacker'), `only attackers are blamed: ${arena.raised().join(', ')}`);
      await arena.env.driver.delete(attacker.id);
    });
  }

  test('effectiveness: a tenant whose requests keep crashing hosts → Isolate host crashes', { timeout: 90_000 }, async () => {
    const bad = await launch(arena.env, 'crashy', `export default { async fetch() { await new Promise((r) => setTimeout(r, 10000)); return new Response('x') } }`);
    for (let strike = 0; strike < 2; strike++) {
      await until(async () => (await arena.env.driver.inspect(bad.id))?.info?.pid !== undefined);
      const pid = (await arena.env.driver.inspect(bad.id))!.info!.pid as number;
      const pending = http(bad.url);
      await sleep(100);
      process.kill(pid, 'SIGKILL');
      assert.equal((await pending).status, 502);
    }
    const alert = await arena.alertOn('Isolate host crashes', bad.id);
    assert.equal(alert.tenantId, 'crashy');
    await arena.guard.drained();
    assert.deepEqual(arena.guard.alerts().filter((a) => a.tenantId !== 'attacker' && a.instanceId !== bad.id).map((a) => `${a.rule} @${a.instanceId}`), [],
      'tenants without a request in flight there (the neighbour, the benign one) are not blamed');
    await arena.env.driver.delete(bad.id);
  });

  test('every env attack is in the table, or named silent with a reason', () => {
    const titles: string[] = [];
    for (const file of ['isolation', 'limits', 'sandbox']) {
      const source = readFileSync(fileURLToPath(new URL(`../../../../test/attacks/env/${file}.test.ts`, import.meta.url)), 'utf8');
      titles.push(...[...source.matchAll(/\btest\((['`])((?:\\.|(?!\1).)+)\1/g)].map((m) => m[2]!.replace(/\\'/g, "'")));
      const attacks = /const ATTACKS[^]*?\n};/.exec(source)?.[0] ?? '';
      titles.push(...[...attacks.matchAll(/^\s+'([^']+)': \{ code:/gm)].map((m) => m[1]!));
    }
    assert.ok(titles.length >= 15, `found ${titles.length} attacks: ${titles.join(' | ')}`);
    const covered = [...CASES.map((c) => c.attack), 'a tenant whose requests keep crashing hosts', ...Object.keys(SILENT)];
    const missing = titles.filter((t) => !covered.some((c) => t.startsWith(c)));
    assert.deepEqual(missing, [], 'env attacks without an expected alert or a reason');
  });
});
