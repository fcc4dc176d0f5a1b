/**
 * Operator sessions through the API, with the daemon's guard watching (bpftrace
 * attached): `strata exec acme/web -- sh -c 'ls /www'` in a web instance — a site
 * routes to it — is recorded as the session it is (the audit entry's session, the
 * user, `proc.origin: api`) and the instance keeps running; a shell its web server
 * spawns (a CGI) freezes it. On main the exec froze the instance ("Shell in web
 * instance"), as a webshell would.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bpfAvailable } from '../../src/levels/os/guard/interceptor.js';
import { OsDriver } from '../../src/levels/os/driver.js';
import { WEB_APP } from '../attacks/os/guard-arena.js';
import { builtinImages, claimSlot, httpGet, leftovers, nothingLeft, sweep, testDriverOptions } from '../levels/os/helpers.js';
import { TestDaemon } from '../support/harness.js';

const availability = bpfAvailable();
const options = testDriverOptions(await claimSlot());

interface AlertView { rule: string; action: string; instanceId: string | null; fields: Record<string, unknown> }

/** `strata exec` as a user runs it (asynchronously: the daemon under test lives in this process). */
function strata(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['bin/strata', ...args], { env });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('close', (code) => resolve({ code, out }));
    child.stdin.end();
  });
}

describe('operator sessions through the API, with the guard on', { skip: availability.available ? false : availability.reason, timeout: 400_000 }, () => {
  let d: TestDaemon;
  let acme: string;
  let env: NodeJS.ProcessEnv;
  let driver: OsDriver;
  let webId: string;

  const alerts = async (): Promise<AlertView[]> => (await d.request('GET', '/v1/alerts', { token: acme })).body.items;
  const state = async (): Promise<string> => (await d.request('GET', '/v1/tenants/acme/instances/web', { token: acme })).body.state;

  before(async () => {
    await builtinImages();
    driver = new OsDriver(options);
    d = await TestDaemon.start({ drivers: [driver], guard: { bpf: true } });
    acme = await d.tenantWithUser('acme');
    env = { ...process.env, STRATA_URL: d.url, STRATA_TOKEN: acme };
    const r = await d.request('POST', '/v1/tenants/acme/instances?wait=60', {
      token: acme, body: { name: 'web', level: 'os', source: 'busybox', config: { volumeMiB: 16, args: ['sh', '-c', WEB_APP] } },
    });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    webId = r.body.instance.id;
    const site = await d.request('POST', '/v1/tenants/acme/sites', { token: acme, body: { hostname: 'www.acme.test', target: { kind: 'instance', instance: 'web', port: 8080 } } });
    assert.equal(site.status, 201, JSON.stringify(site.body));
  }, { timeout: 120_000 });

  after(async () => {
    await d?.close();
    await sweep(options);
    const left = await leftovers(options);
    assert.ok(nothingLeft(left), JSON.stringify(left));
  }, { timeout: 120_000 });

  test("strata exec acme/web -- sh -c 'ls /www': recorded with its session, the instance keeps running", { timeout: 200_000 }, async () => {
    // The os interceptor attaches in the background (compiling takes a while on a busy machine): exec until the guard has seen one.
    const deadline = Date.now() + 150_000;
    let shell: AlertView | undefined;
    let runs = 0;
    while (!shell) {
      assert.ok(Date.now() < deadline, `the guard never recorded an exec shell: ${JSON.stringify((await alerts()).map((a) => a.rule))}`);
      const r = await strata(['exec', 'acme/web', '--', 'sh', '-c', 'ls /www'], env);
      assert.equal(r.code, 0, r.out);
      runs++;
      for (let i = 0; i < 20 && !shell; i++) {
        await sleep(250);
        shell = (await alerts()).find((a) => a.rule === 'Shell in operator session' && a.instanceId === webId);
      }
    }
    await sleep(1000);
    const raised = (await alerts()).filter((a) => a.instanceId === webId);
    assert.deepEqual(raised.filter((a) => a.action !== 'notify').map((a) => `${a.rule}: ${a.action}`), [], 'nothing acted on the operator session');
    assert.deepEqual(raised.filter((a) => a.rule === 'Shell in web instance'), []);
    assert.equal(await state(), 'running');
    assert.equal(shell.fields['proc.origin'], 'api');
    assert.match(String(shell.fields['session.user']), /^tenant-admin-acme-/);
    // The alert names the session the audit log has for that exec.
    const entries = (await d.request('GET', '/v1/audit/entries?limit=10000', { token: acme })).body.items.map((x: any) => x.entry);
    const execs = entries.filter((e: any) => e.action === 'instance.exec');
    assert.equal(execs.length, runs);
    assert.ok(execs.some((e: any) => e.details.session === shell!.fields['session.id']), 'the audit entry names the session the guard recorded');
    assert.ok(raised.some((a) => a.rule === 'Operator session' && a.fields['session.id'] === shell!.fields['session.id']));
  });

  test('a shell the web server spawns freezes the instance', { timeout: 60_000 }, async () => {
    const { address } = await driver.address(webId);
    const answer = await httpGet(address, 8080, '/cgi-bin/shell', 10_000);
    assert.equal(answer.status, 200, answer.body);
    let frozen: AlertView | undefined;
    const deadline = Date.now() + 30_000;
    while (!frozen || (await state()) !== 'paused') {
      assert.ok(Date.now() < deadline, `not frozen: ${await state()}, ${JSON.stringify((await alerts()).map((a) => a.rule))}`);
      await sleep(200);
      frozen = (await alerts()).find((a) => a.rule === 'Shell in web instance' && a.instanceId === webId);
    }
    assert.equal(frozen.action, 'freeze');
    assert.equal(frozen.fields['proc.origin'], 'workload');
  });
});
