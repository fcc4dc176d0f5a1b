/**
 * The breakout arena with the guard watching: the default ruleset, the os
 * interceptor (bpftrace) on the arena's containers, and an actuator target
 * that records what it is asked to do (so a freeze does not stop the suite).
 * `alertsSince(mark)` and `waitFor(rule, instance, mark)` read what it raised.
 */
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Alert } from '../../../src/guard/actuator.js';
import type { GuardEvent } from '../../../src/core/guard-event.js';
import { Guard } from '../../../src/guard/guard.js';
import { BpfInterceptor } from '../../../src/levels/os/guard/interceptor.js';
import { loadDefaultRuleset } from '../../../src/guard/rules.js';
import type { InstanceSpec } from '../../../src/levels/driver.js';
import { FakeTarget, MemoryAudit, recordingBus } from '../../guard/fakes.js';
import { httpGet, waitFor200, type HttpAnswer } from '../../levels/os/helpers.js';
import { Arena, PROBE, type Launched } from './arena.js';

/**
 * The web app's entrypoint: busybox httpd serving /data/www with CGI scripts, each
 * what a web exploit makes a server run. The scripts are written by the entrypoint
 * itself, so setting up spawns nothing from outside. A CGI's process is named
 * after its script, so what it starts has a web server's child for a parent.
 */
export const WEB_APP = String.raw`
mkdir -p /data/www/cgi-bin
cgi() { printf '#!/bin/sh\nprintf "Content-Type: text/plain\\r\\n\\r\\n"\n%s\n' "$2" > /data/www/cgi-bin/$1; chmod 755 /data/www/cgi-bin/$1; }
cgi shell 'sh -c "id; cat /proc/self/sessionid"'
cgi rename '${PROBE} rename-spawn runc /bin/sh -c "id; cat /proc/self/sessionid"'
cgi forge '${PROBE} loginuid-spawn /bin/sh -c "id; cat /proc/self/sessionid"'
echo ok > /data/www/index.html
exec httpd -f -p 8080 -h /data/www
`;

/** The CGI scripts of the web app. */
export type WebAppScript = 'shell' | 'rename' | 'forge';

export class GuardedArena extends Arena {
  guard!: Guard;
  bpf!: BpfInterceptor;
  readonly target = new FakeTarget();
  readonly #recent: GuardEvent[] = [];
  readonly #roles = new Map<string, { tenant: string; role: string; vcpus: number }>();

  /** Opens the arena, then starts the guard; `evil` is a worker (0.5 vCPU), `good` a web instance. */
  override async open(): Promise<void> {
    await super.open();
    this.#roles.set(this.evil.id, { tenant: 'evil', role: 'worker', vcpus: 0.5 });
    this.#roles.set(this.good.id, { tenant: 'good', role: 'web', vcpus: 1 });
    this.guard = new Guard({ ruleset: await loadDefaultRuleset(), target: this.target, audit: new MemoryAudit(), events: recordingBus().bus });
    this.bpf = new BpfInterceptor({
      identities: this.driver.identities,
      labels: (identity) => ({ 'instance.role': this.#roles.get(identity.instanceId)?.role ?? 'worker' }),
      sessions: this.guard.sessions,
    });
    const bpf = this.bpf;
    // Keeps the last events seen, so a missing alert can say what the guard did see.
    await this.guard.addInterceptor({
      id: bpf.id,
      start: (emit) => bpf.start((e) => { this.#recent.push(e); if (this.#recent.length > 2000) this.#recent.shift(); emit(e); }),
      stop: () => bpf.stop(),
    });
    await this.guard.start();
  }

  /** Launches a web instance whose server runs CGI scripts (`viaWebApp`): the workload spawning processes, as after a web exploit. */
  async launchWebApp(tenant = 'good'): Promise<Launched> {
    const app = await this.launchAs('web', tenant, { config: { volumeMiB: 16, args: ['sh', '-c', WEB_APP] } });
    await waitFor200(app.address, app.port, 10_000);
    return app;
  }

  /** Has the web app's server run one of its CGI scripts: what it spawns is the workload's. */
  viaWebApp(app: Launched, script: WebAppScript): Promise<HttpAnswer> {
    return httpGet(app.address, app.port, `/cgi-bin/${script}`, 10_000);
  }

  /** Launches an instance the guard knows with a role (web, worker). */
  async launchAs(role: string, tenant: string, overrides: Partial<InstanceSpec> = {}): Promise<Launched> {
    const launched = await this.launch(tenant, overrides);
    this.#roles.set(launched.id, { tenant, role, vcpus: overrides.limits?.vcpus ?? 1 });
    return launched;
  }

  override async close(): Promise<void> {
    await this.guard?.stop();
    await super.close();
  }

  /** A mark: alerts raised after it are `alertsSince(mark)`. */
  mark(): number {
    return this.guard.stats().alerts;
  }

  alertsSince(mark: number): Alert[] {
    const all = this.guard.alerts();
    const total = this.guard.stats().alerts;
    return all.slice(Math.max(0, all.length - (total - mark)));
  }

  /** Waits (default up to 10 s) for an alert of `rule` on `instanceId` (null: a guard-level one) raised after `mark`. */
  async waitFor(rule: string, instanceId: string | null, mark: number, timeoutMs = 10_000): Promise<Alert> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      await this.guard.drained();
      const hit = this.alertsSince(mark).find((a) => a.rule === rule && a.instanceId === instanceId);
      if (hit) return hit;
      if (Date.now() > deadline) {
        const got = this.alertsSince(mark).map((a) => `${a.rule} @${a.instanceId}`);
        const seen = this.#recent.filter((e) => e.instanceId === instanceId).slice(-8).map((e) => `${e.kind} ${JSON.stringify(e.fields)}`);
        assert.fail(`no '${rule}' alert on ${instanceId}; raised: ${JSON.stringify(got)}; last events: ${seen.join('\n')}`);
      }
      await sleep(100);
    }
  }
}
