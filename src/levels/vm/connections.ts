/**
 * The daemon's live connections to each running QEMU: its QMP socket and the
 * relay of its serial console (`console.ts`). Both are opened on first use —
 * at start, or for a VM adopted after a daemon restart — and forgotten when
 * QEMU is gone.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../../core/errors.js';
import { isAlive } from '../../core/proc.js';
import { ConsoleRelay } from './console.js';
import { ConsoleLog, type ConsoleLogLimits } from './console-log.js';
import type { VmFiles } from './instance-files.js';
import { QmpClient } from './qmp.js';

/** QMP answers for inspect and stop; generous, as TCG vCPUs and other tenants load the host. */
export const QUERY_TIMEOUT_MS = 5_000;

export interface QueryStatus {
  running: boolean;
  status: string;
}

export class QemuConnections {
  readonly #qmp = new Map<string, QmpClient>();
  readonly #consoles = new Map<string, Promise<ConsoleRelay | null>>();

  constructor(
    private readonly files: VmFiles,
    private readonly consoleLimits: ConsoleLogLimits,
    private readonly startTimeoutMs: number,
  ) {}

  /** The live QMP connection to `id`'s QEMU. */
  async client(id: string): Promise<QmpClient> {
    const existing = this.#qmp.get(id);
    if (existing && !existing.isClosed) return existing;
    const client = await QmpClient.connect(this.files.qmpPath(id), { timeoutMs: QUERY_TIMEOUT_MS });
    this.#track(id, client);
    return client;
  }

  /** The QMP connection of a QEMU that must be running. */
  async running(id: string): Promise<QmpClient> {
    if (!(await this.files.pid(id))) throw new StrataError('STRATA_ERR_DRIVER', `instance ${id} is not running`, { id });
    return this.client(id);
  }

  /** Connects to a QEMU just launched: retries until its socket answers, fails fast if it exits. */
  async connectNew(id: string, pid: number): Promise<QmpClient> {
    const deadline = Date.now() + this.startTimeoutMs;
    for (;;) {
      // Right after spawn the launcher may not have exec'd yet (its cmdline is still ours): only a gone process has exited.
      if (!isAlive(pid)) throw new StrataError('STRATA_ERR_DRIVER', 'QEMU exited during start-up');
      try {
        const client = await QmpClient.connect(this.files.qmpPath(id), { timeoutMs: 2_000 });
        this.#track(id, client);
        return client;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await sleep(3); // QEMU opens the socket ~0.1 s after exec: poll finely, a restore waits on it
      }
    }
  }

  #track(id: string, client: QmpClient): void {
    this.#qmp.get(id)?.close();
    this.#qmp.set(id, client);
    void client.closed.then(() => { if (this.#qmp.get(id) === client) this.#qmp.delete(id); });
  }

  /** The console relay of running `id`; rejects when the VM has no console socket. */
  console(id: string): Promise<ConsoleRelay> {
    const existing = this.#consoles.get(id);
    // A closed or failed relay is replaced once: a concurrent caller that finds it replaced takes the new one.
    if (existing) return existing.then((r) => (r && !r.isClosed ? r : this.#consoles.get(id) === existing ? this.#connectConsole(id) : this.console(id)));
    return this.#connectConsole(id);
  }

  #connectConsole(id: string): Promise<ConsoleRelay> {
    const relay = ConsoleRelay.connect(this.files.consoleSocketPath(id), new ConsoleLog(this.files.consolePath(id), this.consoleLimits), id);
    const entry = relay.catch(() => null);
    this.#consoles.set(id, entry);
    void relay.then((r) => r.closed).catch(() => undefined).then(() => { if (this.#consoles.get(id) === entry) this.#consoles.delete(id); });
    return relay;
  }

  /** After QEMU is gone: closes its QMP connection and lets the console relay read to EOF (one second at most). */
  async forget(id: string): Promise<void> {
    this.#qmp.get(id)?.close();
    this.#qmp.delete(id);
    // QEMU is gone: the relay reads what the guest printed last (e.g. STRATA-POWEROFF) up to EOF, and the log gets it.
    const relay = await this.#consoles.get(id);
    if (relay) await Promise.race([relay.closed, sleep(1_000)]).then(() => relay.close());
  }

  /** Closes every connection; the VMs run on. */
  async closeAll(): Promise<void> {
    for (const client of this.#qmp.values()) client.close();
    this.#qmp.clear();
    const relays = [...this.#consoles.values()];
    this.#consoles.clear();
    await Promise.all(relays.map(async (r) => (await r.catch(() => null))?.close()));
  }
}
