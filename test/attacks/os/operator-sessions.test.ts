/**
 * Operator sessions against the live guard (bpftrace attached, the default
 * ruleset, real containers): an exec session registered as the API registers
 * one is recorded with its session and user and never frozen, with or without
 * a terminal; a shell the workload spawns — its web server running a CGI — is
 * frozen, and stays `workload` when the process renames itself to look like
 * the session's runner, or opens an audit session of its own (the forged
 * mark) while an operator session is open in the same instance.
 *
 * The API path itself (the WebSocket route registering before the driver
 * spawns) is test/e2e/operator-sessions.test.ts; this one drives the same
 * registry and driver calls without the daemon.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Alert } from '../../../src/guard/actuator.js';
import { bpfAvailable } from '../../../src/levels/os/guard/interceptor.js';
import type { ExecSession } from '../../../src/levels/driver.js';
import { claimSlot } from '../../levels/os/helpers.js';
import type { Launched } from './arena.js';
import { GuardedArena, type WebAppScript } from './guard-arena.js';

const availability = bpfAvailable();
const arena = new GuardedArena(await claimSlot());

/** Opens an exec session as the API does: registered with the guard, marked by its runner before it runs. */
async function operatorExec(instance: Launched, argv: string[], tty: boolean): Promise<{ id: string; session: ExecSession }> {
  const operator = arena.guard.sessions.open({ kind: 'exec', tenantId: 'good', instanceId: instance.id, level: 'os', user: 'alice', argv });
  const session = await arena.driver.exec(instance.id, argv, { tty, mark: (m) => operator.bind(m) });
  operator.started();
  void session.exit.then(() => operator.close());
  return { id: operator.id, session };
}

const output = (s: ExecSession): (() => string) => {
  let text = '';
  s.stdout.on('data', (c: Buffer) => (text += c.toString()));
  s.stderr?.on('data', (c: Buffer) => (text += c.toString()));
  return () => text;
};

/** What the guard did to `instanceId` since `mark`: the actuator target's calls, and the alerts' actions. */
function actionsOn(instanceId: string, mark: number, callsBefore: number): { calls: string[]; acted: Alert[] } {
  return {
    calls: arena.target.calls.slice(callsBefore).filter((c) => c.endsWith(` ${instanceId}`)),
    acted: arena.alertsSince(mark).filter((a) => a.instanceId === instanceId && a.action !== 'notify'),
  };
}

describe('operator sessions and the workload, told apart in the kernel', { skip: availability.available ? false : availability.reason }, () => {
  before(async () => arena.open(), { timeout: 180_000 });
  after(async () => arena.close(), { timeout: 120_000 });

  test('an exec session in a web instance: its shells are recorded with the session and its user, nothing is frozen', { timeout: 90_000 }, async () => {
    const web = arena.good; // a web instance (role web) serving HTTP
    const mark = arena.mark();
    const callsBefore = arena.target.calls.length;
    const plain = await operatorExec(web, ['sh', '-c', 'ls /www; sh -c id; cat /proc/self/sessionid'], false);
    const plainOut = output(plain.session);
    assert.equal(await plain.session.exit, 0, plainOut());
    const shell = await arena.waitFor('Shell in operator session', web.id, mark, 20_000);
    assert.equal(shell.fields['proc.origin'], 'api');
    assert.equal(shell.fields['session.id'], plain.id);
    assert.equal(shell.fields['session.user'], 'alice');
    assert.equal(shell.action, 'notify');

    // Interactive, with a terminal: what an operator types.
    const typed = await operatorExec(web, ['sh'], true);
    const typedOut = output(typed.session);
    typed.session.stdin.write('ls /www; bash -c true 2>/dev/null; sh -c "echo typed-$((6*7))"; exit\n');
    assert.equal(await typed.session.exit, 0, typedOut());
    assert.match(typedOut(), /typed-42/);
    const recorded = await arena.waitFor('Shell in operator session', web.id, mark, 20_000);
    assert.ok(recorded);
    await sleep(1500); // whatever else the kernel reported about both sessions
    await arena.guard.drained();
    const raised = arena.alertsSince(mark).filter((a) => a.instanceId === web.id);
    assert.ok(raised.some((a) => a.rule === 'Shell in operator session' && a.fields['session.id'] === typed.id), JSON.stringify(raised.map((a) => a.rule)));
    assert.ok(raised.some((a) => a.rule === 'Operator session' && a.fields['session.id'] === typed.id));
    assert.deepEqual(raised.filter((a) => a.rule === 'Shell in web instance'), []);
    assert.deepEqual(actionsOn(web.id, mark, callsBefore), { calls: [], acted: [] }, 'the guard acted on an operator session');
  });

  const workloadCases: { what: string; script: WebAppScript; pname?: string }[] = [
    { what: 'a shell the web server spawns (a CGI) is frozen', script: 'shell' },
    { what: 'a workload process renamed (prctl) to look like the runner is still the workload: frozen', script: 'rename', pname: 'runc' },
    { what: 'a forged mark — an audit session opened inside the container — is ignored: frozen', script: 'forge' },
  ];
  for (const c of workloadCases) {
    test(c.what, { timeout: 90_000 }, async () => {
      const app = await arena.launchWebApp();
      try {
        // An operator session is open in the same instance meanwhile: the workload must not pass for it.
        const open = await operatorExec(app, ['sleep', '60'], false);
        const mark = arena.mark();
        const callsBefore = arena.target.calls.length;
        const answer = await arena.viaWebApp(app, c.script);
        assert.equal(answer.status, 200, answer.body);
        assert.match(answer.body, /uid=0/, 'the CGI ran its shell');
        const alert = await arena.waitFor('Shell in web instance', app.id, mark, 20_000);
        assert.equal(alert.fields['proc.origin'], 'workload');
        assert.equal(alert.fields['session.id'], undefined);
        if (c.pname) assert.equal(alert.fields['proc.pname'], c.pname, 'the rename took');
        if (c.script === 'forge') {
          // It did get an audit session of its own: the kernel's fresh one, bound to nobody.
          const [, sid] = /sessionid (\d+)/.exec(answer.body) ?? [];
          assert.ok(Number(sid) > 0, answer.body);
          assert.equal(arena.guard.sessions.byExecId(Number(sid)), undefined);
        }
        assert.equal(alert.action, 'freeze');
        assert.deepEqual(actionsOn(app.id, mark, callsBefore).calls.slice(0, 1), [`freeze ${app.id}`]);
        open.session.kill();
        await open.session.exit;
      } finally {
        await arena.remove(app.id);
      }
    });
  }
});
