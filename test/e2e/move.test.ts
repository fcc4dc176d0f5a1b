/**
 * A move keeps the site answering: two real daemons (`bin/strata up` twice, own
 * data dirs, API and gateway ports, vm networks 10 and 11), an x86_64 vm tenant
 * serving HTTP with an in-memory counter and a site by name on A's gateway. A
 * client keeps asking A's gateway while the instance moves live to B; the
 * counter goes on (memory moved, not rebooted), failed requests are counted and
 * bounded, B serves the site by name afterwards, A holds nothing (no record, no
 * quota used, no QEMU, no tap) and forwards the name to B, and both audit logs
 * verify. First, a move to a target with a wrong token fails with a typed error
 * and leaves the instance running on A and nothing on B.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { execFile, execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { imageMissing, testNetwork } from '../levels/vm/support.js';
import { freePort, viaGateway, type GatewayAnswer } from '../support/net.js';
import { until } from '../support/until.js';
import { tempDir } from '../support/temp.js';

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));
const HOST = 'shop.move.test';
/** The counter lives in the shell's memory: a reboot would start it again from 1. */
const SERVICE = '(i=0; while true; do i=$((i+1)); echo $i > /www/c.tmp; mv /www/c.tmp /www/counter; sleep 0.2; done) & exec httpd -f -p 80 -h /www';
/** The client's patience per request. */
const CLIENT_TIMEOUT_MS = 3_000;
/**
 * Requests that may fail: the guest pauses on A for the last of its memory, then
 * resumes on B and takes B's address before its link comes up, and only then
 * does A's gateway forward the site to B's — the switch-over, which the move
 * reports (`switchOverMs`; under TCG on a shared host 1–4 s). Nothing answers
 * the site in between: the request in flight to the paused guest never gets an
 * answer, and a sequential client (one request at a time, 50 ms apart, 3 s
 * timeout) loses at most one more per timeout while the switch-over lasts, and
 * one at the route swap itself.
 */
const maxFailed = (switchOverMs: number): number => 2 + Math.ceil(switchOverMs / CLIENT_TIMEOUT_MS);

interface Daemon {
  child: ChildProcessWithoutNullStreams;
  dir: string;
  url: string;
  token: string;
  gatewayPort: number;
  vmTag: string;
}

const root = tempDir('move');
chmodSync(root, 0o711); // the VM user traverses it to the run dirs (and A's QEMU to B's socket)
const daemons: Daemon[] = [];

after(async () => {
  for (const d of daemons) {
    // Instances outlive a daemon (a restarted one adopts them): delete them first.
    const list = await api(d, 'GET', '/v1/tenants/shop/instances').catch(() => null);
    for (const i of (list?.body?.items ?? []) as Array<{ name: string }>) await api(d, 'DELETE', `/v1/tenants/shop/instances/${i.name}?wait=60`).catch(() => undefined);
  }
  await Promise.all(daemons.map(async (d) => {
    if (d.child.exitCode !== null || d.child.signalCode !== null) return;
    const exited = new Promise((r) => d.child.once('exit', r));
    d.child.kill('SIGTERM');
    await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
    if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
  }));
  // Last resort for a failed run: QEMUs of this test's own data dirs, by pid.
  for (const pid of qemusUnder(root)) {
    try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

async function up(name: string, slot: number): Promise<Daemon> {
  const dir = join(root, name);
  mkdirSync(dir, { mode: 0o711 });
  chmodSync(dir, 0o711);
  const gatewayPort = await freePort();
  const vm = testNetwork(slot);
  // The emu level gets its own plan too: two daemons never share a bridge, a table or an address.
  const emu = { tag: `w${'abcdefghijklmnop'[slot]!}`, subnet: `10.${200 + slot}.0.0/16` };
  const child = spawn(process.execPath, [
    BIN, 'up', '--data-dir', dir, '--api-listen', '127.0.0.1:0', '--listen', `http://127.0.0.1:${gatewayPort}`,
    '--vm-network', `${vm.tag}:${vm.subnet}`, '--emu-network', `${emu.tag}:${emu.subnet}`,
  ], { env: { PATH: process.env.PATH ?? '', HOME: root } });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (s: string) => (out += s));
  child.stderr.setEncoding('utf8').on('data', (s: string) => (err = (err + s).slice(-4000)));
  const deadline = Date.now() + 120_000;
  while (!/Gateway \S+ on /.test(out)) {
    if (child.exitCode !== null) throw new Error(`strata up ${name} exited ${child.exitCode}: ${err}`);
    if (Date.now() > deadline) throw new Error(`strata up ${name} did not come up: ${out} ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const url = /listening on (http:\/\/\S+)/.exec(out)![1]!;
  const d = { child, dir, url, token: readFileSync(join(dir, 'admin.token'), 'utf8').trim(), gatewayPort, vmTag: vm.tag! };
  daemons.push(d);
  return d;
}

async function api(d: Daemon, method: string, path: string, body?: unknown, token = d.token): Promise<{ status: number; body: any }> {
  const res = await fetch(`${d.url}${path}`, {
    method, headers: { authorization: `Bearer ${token}`, 'x-strata-reason': 'move test', ...(body ? { 'content-type': 'application/json' } : {}) },
    ...(body ? { body: JSON.stringify(body) } : {}),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

/** GET through a gateway by the site's name; status 0 when nothing answered in time. */
const visit = (port: number, path: string) => viaGateway(port, HOST, path, { timeoutMs: CLIENT_TIMEOUT_MS });
const described = (r: GatewayAnswer): string => (r.status ? `${r.status} ${JSON.stringify(r.body.slice(0, 60))}` : `no answer (${r.error})`);

async function counterVia(port: number, timeoutMs: number): Promise<number> {
  let last: GatewayAnswer | undefined;
  const counter = (r: GatewayAnswer): { n: number } | undefined => (r.status === 200 && /^\d+$/.test(r.body.trim()) ? { n: Number(r.body.trim()) } : undefined);
  const { n } = await until(async () => counter((last = await visit(port, '/counter'))), {
    ms: timeoutMs, every: 200, what: () => `a counter through the gateway on ${port} (last: ${last ? described(last) : 'none'})`,
  });
  return n;
}

/** Runs bin/strata against daemon `d` as its provider-admin, with a reason; never throws. */
function strata(d: Daemon, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, '--reason', 'move test', ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: root, STRATA_URL: d.url, STRATA_TOKEN: d.token }, timeout: 300_000,
    }, (e, stdout, stderr) => resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout, stderr }));
  });
}

/** Pids of QEMUs whose command line names a path under `dir`. */
function qemusUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8');
      if (cmdline.startsWith('qemu-system') || cmdline.includes('/qemu-system')) if (cmdline.includes(`${dir}/`)) pids.push(Number(entry));
    } catch { /* gone */ }
  }
  return pids;
}

const links = (): string[] => execFileSync('ip', ['-o', 'link', 'show'], { encoding: 'utf8' }).split('\n').map((l) => l.split(': ')[1]?.split('@')[0] ?? '').filter(Boolean);

test('a move keeps the site answering (count failed requests during it)', { timeout: 600_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  const [a, b] = await Promise.all([up('a', 10), up('b', 11)]);
  const quota = { instances: 2, vcpus: 2, memoryMiB: 1024, diskMiB: 1024, sites: 2 };
  for (const d of [a, b]) assert.equal((await api(d, 'POST', '/v1/tenants', { name: 'shop', quota })).status, 201);

  const launched = await api(a, 'POST', '/v1/tenants/shop/instances?wait=240', {
    name: 'web', level: 'vm', limits: { vcpus: 1, memoryMiB: 128, diskMiB: 64 }, config: { command: SERVICE },
  });
  assert.equal(launched.status, 200, JSON.stringify(launched.body));
  assert.equal(launched.body.instance.state, 'running', JSON.stringify(launched.body));
  assert.equal((await api(a, 'POST', '/v1/tenants/shop/sites', { hostname: HOST, target: { kind: 'instance', instance: 'web', port: 80 } })).status, 201);
  await counterVia(a.gatewayPort, 120_000);

  // Bad input is refused at once; a target that refuses (a wrong token) fails the move, and nothing moves.
  const bad = await api(a, 'POST', '/v1/tenants/shop/instances/web/move', { target: { url: 'ftp://127.0.0.1:1', token: 'x' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.code, 'STRATA_ERR_VALIDATION');
  // The tenant's snapshots do not travel: refused, not lost.
  assert.equal((await api(a, 'POST', '/v1/tenants/shop/instances/web/snapshots?wait=120', { name: 'keep' })).body.operation.status, 'succeeded');
  const kept = await api(a, 'POST', '/v1/tenants/shop/instances/web/move', { target: { url: b.url, token: b.token } });
  assert.equal(kept.status, 409);
  assert.equal(kept.body.error.code, 'STRATA_ERR_NOT_EMPTY');
  assert.equal((await api(a, 'DELETE', '/v1/tenants/shop/instances/web/snapshots/keep')).status, 204);
  const refused = await api(a, 'POST', '/v1/tenants/shop/instances/web/move?wait=120', { target: { url: b.url, token: 'strata_nope_nope' } });
  assert.equal(refused.status, 200, JSON.stringify(refused.body));
  assert.equal(refused.body.operation.status, 'failed');
  assert.equal(refused.body.operation.error.code, 'STRATA_ERR_MOVE_TARGET');
  assert.match(refused.body.operation.error.message, /STRATA_ERR_UNAUTHENTICATED/);
  assert.equal((await api(a, 'GET', '/v1/tenants/shop/instances/web')).body.state, 'running', 'still running on A');
  assert.equal((await api(b, 'GET', '/v1/tenants/shop/instances/web')).status, 404, 'nothing on B');
  assert.equal((await api(b, 'GET', '/v1/tenants/shop')).body.usage.instances, 0);
  const usage2 = await strata(a, ['instance', 'move', 'shop/web', '--to', b.url, '--to-token', join(root, 'missing.token')]);
  assert.equal(usage2.code, 2);
  assert.match(usage2.stderr, /^strata: cannot read the target's token file .*missing\.token: ENOENT \(STRATA_ERR_VALIDATION\)\n$/);
  writeFileSync(join(root, 'wrong.token'), 'strata_nope_nope\n', { mode: 0o600 });
  const wrong = await strata(a, ['instance', 'move', 'shop/web', '--to', b.url, '--to-token', join(root, 'wrong.token')]);
  assert.equal(wrong.code, 1);
  assert.match(wrong.stderr, /^strata: instance\.move shop\/web failed: the move target http:\S+ refused: .*\(STRATA_ERR_UNAUTHENTICATED\) \(STRATA_ERR_MOVE_TARGET\)\n$/);
  // A target whose stream breaks half-way (its socket leads nowhere): A undoes the move and its guest runs on; the target is told.
  const before = await counterVia(a.gatewayPort, 10_000);
  const told: unknown[] = [];
  const broken = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c)).on('end', () => {
      if (req.url!.endsWith('/receive/finish')) told.push(JSON.parse(body));
      res.writeHead(req.url!.endsWith('/receive') ? 201 : 200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ socket: join(root, 'nowhere', 'incoming.sock'), gateway: null, info: {} }));
    });
  });
  await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
  try {
    const url = `http://127.0.0.1:${(broken.address() as AddressInfo).port}`;
    const halfway = await api(a, 'POST', '/v1/tenants/shop/instances/web/move?wait=120', { target: { url, token: 'any' } });
    assert.equal(halfway.body.operation.status, 'failed', JSON.stringify(halfway.body));
    assert.equal(halfway.body.operation.error.code, 'STRATA_ERR_DRIVER');
    assert.match(halfway.body.operation.error.message, /^the move broke off, shop\/web runs on here: /);
    assert.deepEqual(told, [{ ok: false }], 'the target was told to drop its half');
  } finally {
    broken.close();
  }
  assert.equal((await api(a, 'GET', '/v1/tenants/shop/instances/web')).body.state, 'running', 'still running on A');
  assert.ok((await counterVia(a.gatewayPort, 10_000)) >= before, 'and still counting: not restarted');

  // A receive that the sender calls off: B removes its half (QEMU, tap, record, sites, quota).
  const receiving = await api(b, 'POST', '/v1/tenants/shop/instances/arriving/receive', {
    level: 'vm', source: null, limits: { vcpus: 1, memoryMiB: 128, diskMiB: 64 }, config: { command: SERVICE }, sites: [{ hostname: 'arriving.move.test', port: 80 }], from: 'test',
  });
  assert.equal(receiving.status, 201, JSON.stringify(receiving.body));
  assert.ok(receiving.body.socket.startsWith(`${b.dir}/`), receiving.body.socket);
  assert.equal(qemusUnder(b.dir).length, 1, "B's QEMU waits for the stream");
  assert.equal((await api(b, 'GET', '/v1/tenants/shop')).body.usage.sites, 1);
  const calledOff = await api(b, 'POST', '/v1/tenants/shop/instances/arriving/receive/finish', { ok: false });
  assert.equal(calledOff.status, 200, JSON.stringify(calledOff.body));
  assert.equal(calledOff.body.instance, null);
  assert.equal((await api(b, 'GET', '/v1/tenants/shop/instances/arriving')).status, 404);
  assert.deepEqual((await api(b, 'GET', '/v1/tenants/shop')).body.usage, { instances: 0, vcpus: 0, memoryMiB: 0, diskMiB: 0, sites: 0 });
  assert.deepEqual(qemusUnder(b.dir), [], 'no QEMU left on B');
  assert.deepEqual(links().filter((l) => l.startsWith(`${b.vmTag}t`)), [], 'no tap left on B');

  const stillCounting = await counterVia(a.gatewayPort, 10_000);

  // The move, while a client keeps asking A's gateway by the site's name.
  const seen: number[] = [];
  let failed = 0;
  const failures: string[] = [];
  let asking = true;
  const started = Date.now();
  const client = (async () => {
    while (asking) {
      const at = Date.now() - started;
      const r = await visit(a.gatewayPort, '/counter');
      if (r.status === 200 && /^\d+$/.test(r.body.trim())) seen.push(Number(r.body.trim()));
      else {
        failed++;
        failures.push(`${described(r)} at ${at} ms`);
      }
      await new Promise((res) => setTimeout(res, 50));
    }
  })();
  let moved: { code: number; stdout: string; stderr: string };
  let moveMs = 0;
  let answeredBefore = 0;
  let answeredUntilMoved = 0;
  try {
    while (seen.length < 3 && Date.now() - started < 30_000) await new Promise((r) => setTimeout(r, 20));
    answeredBefore = seen.length;
    const moveStart = Date.now();
    // Through the CLI, as an operator would: B's own admin token file names the target's provider-admin.
    moved = await strata(a, ['--json', 'instance', 'move', 'shop/web', '--to', b.url, '--to-token', join(b.dir, 'admin.token')]);
    moveMs = Date.now() - moveStart;
    answeredUntilMoved = seen.length;
    // And on for a while after, now forwarded by A's gateway to B's.
    const until = Date.now() + 10_000;
    while ((seen.length < answeredUntilMoved + 5 || Date.now() < moveStart + moveMs + 2_000) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
  } finally {
    asking = false;
    await client;
  }
  assert.equal(moved.code, 0, moved.stderr);
  const operation = JSON.parse(moved.stdout).operation;
  assert.equal(operation.status, 'succeeded');
  assert.deepEqual(operation.result.sites, [HOST]);
  const { switchOverMs } = operation.result as { switchOverMs: number };
  t.diagnostic(`move: ${seen.length} requests answered through A's gateway, ${failed} failed (bound ${maxFailed(switchOverMs)}): ${failures.join(', ') || 'none'}; the move took ${moveMs} ms, its switch-over ${switchOverMs} ms`);

  // The counter went on: never back to the start, as a reboot would make it.
  assert.ok(answeredBefore >= 3, 'the site answered before the move');
  assert.ok(seen.length >= answeredUntilMoved + 5, `A's gateway answered after the move, from B (${seen.length - answeredUntilMoved})`);
  assert.ok(seen[0]! >= stillCounting, 'the counter went on from before the move');
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! >= seen[i - 1]!, `the counter never went back (${seen[i - 1]} then ${seen[i]}): not rebooted`);
  assert.ok(failed <= maxFailed(switchOverMs), `${failed} failed requests during the move (bound ${maxFailed(switchOverMs)} for a ${switchOverMs} ms switch-over)`);

  // B runs it and serves the site by name.
  const there = await api(b, 'GET', '/v1/tenants/shop/instances/web');
  assert.equal(there.body.state, 'running');
  assert.equal(there.body.desiredState, 'running');
  assert.match(String(there.body.info.address), /^10\.191\.\d+\.\d+$/, "it has B's address");
  assert.equal((await api(b, 'GET', `/v1/tenants/shop/sites/${HOST}`)).status, 200);
  assert.ok((await counterVia(b.gatewayPort, 10_000)) >= seen.at(-1)!, "B's gateway serves the site by name");

  // A holds nothing: no record, quota free, no QEMU, no tap; its gateway forwards the name to B.
  assert.equal((await api(a, 'GET', '/v1/tenants/shop/instances/web')).status, 404);
  const usage = (await api(a, 'GET', '/v1/tenants/shop')).body.usage;
  assert.equal(usage.instances, 0);
  assert.equal(usage.sites, 0);
  assert.deepEqual(qemusUnder(a.dir), [], 'no QEMU of A');
  assert.deepEqual(links().filter((l) => l.startsWith(`${a.vmTag}t`)), [], 'no tap of A');
  assert.equal(qemusUnder(b.dir).length, 1, 'one QEMU, on B');

  // The forward is the provider's to list and, once DNS points at B, to remove.
  const forwards = (await api(a, 'GET', '/v1/forwards')).body.items;
  assert.deepEqual(forwards.map((f: any) => [f.hostname, f.tenant, f.to.port, f.target]), [[HOST, 'shop', b.gatewayPort, b.url]]);
  assert.equal((await api(a, 'DELETE', `/v1/forwards/${HOST}`)).status, 204);
  assert.equal((await visit(a.gatewayPort, '/counter')).status, 404, 'A no longer answers the name');
  assert.equal((await visit(b.gatewayPort, '/counter')).status, 200, 'B still does');

  // Both sides audited the move, and both logs verify.
  for (const [d, direction] of [[a, 'out'], [b, 'in']] as const) {
    const entries = (await api(d, 'GET', '/v1/audit/entries?limit=10000')).body.items.map((x: any) => x.entry);
    const move = entries.find((e: any) => e.action === 'instance.move' && e.details?.direction === direction && e.result === 'ok');
    assert.ok(move, `instance.move (${direction}) audited`);
    assert.equal(move.reason, 'move test');
    assert.ok(entries.some((e: any) => e.action === 'instance.move.done' && e.details?.direction === direction && e.result === 'ok'), `instance.move.done (${direction})`);
    const verified = await api(d, 'GET', '/v1/audit/verify');
    assert.equal(verified.body.ok, true, JSON.stringify(verified.body));
  }
  const failedMove = (await api(a, 'GET', '/v1/audit/entries?limit=10000')).body.items.map((x: any) => x.entry)
    .find((e: any) => e.action === 'instance.move.done' && e.result === 'error');
  assert.ok(failedMove, 'the refused move is audited as failed');
});
