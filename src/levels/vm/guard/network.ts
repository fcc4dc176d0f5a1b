/**
 * The network interceptor of the vm and emu levels, from outside the guest:
 * what the tenant-bridge firewall refuses. The vm level's nftables table counts
 * every new connection it will drop, per flow (`probeCounterRules` in
 * `levels/vm/network.ts`: bridge, source, destination, protocol, port); this
 * reads those counters every `intervalMs` with one `nft` call and reports a
 * flow the first time it is seen, and again (with the packets since) at most
 * every `repeatMs` while it goes on — one probe is one event, a scan is many.
 *
 * Each is a `net.blocked` event on the VM that sent it, named by the source MAC
 * the kernel counted the flow under — which the bridge-level filter lets
 * through from that VM's tap only — never by the source address, which a
 * deleted VM's successor may hold while the targets list lags. A source
 * address the sender does not own is flagged `net.spoofed`. A MAC no known VM
 * has is waited for (the targets lag a VM just started) for `unknownAfterMs`,
 * then counted in `unattributed` and logged, never put on anyone. `net.target`:
 * `host` (a host service other than the gateway's ports), `tenant` (another
 * tenant's network; `net.dtenant` names it) or `outside` (off the machine).
 * Counting happens in the kernel; nothing waits on it and the guest sees nothing.
 */
import { readProbeCounts, type ProbeCount } from '../network.js';
import type { Emit, Interceptor } from '../../../core/interceptor.js';
import type { VmTarget } from './targets.js';

export interface VmNetworkInterceptorOptions {
  targets: () => Promise<VmTarget[]>;
  /** The counters; default every vm/emu table's (`readProbeCounts`). */
  read?: () => Promise<ProbeCount[]>;
  /** Default 1 s. */
  intervalMs?: number;
  /** A flow that goes on is reported again after this long; default 60 s. */
  repeatMs?: number;
  /** How long a flow from a MAC no known VM has waits before it is counted as unattributed; default 15 s (the daemon's targets are up to 5 s old). */
  unknownAfterMs?: number;
  /** Problems reading the counters (the interceptor keeps going), and flows put on nobody. */
  log?: (message: string, details?: Record<string, unknown>) => void;
}

const slash24 = (ip: string): string => ip.split('.').slice(0, 3).join('.');

export class VmNetworkInterceptor implements Interceptor {
  readonly id = 'vm:network';
  readonly #o: VmNetworkInterceptorOptions;
  /** flow key → packets last seen, and when it was last reported. */
  readonly #flows = new Map<string, { packets: number; reportedAt: number }>();
  /** flow key → when its MAC was first found on no known VM. */
  readonly #unknownSince = new Map<string, number>();
  #unattributed = 0;
  #timer: NodeJS.Timeout | undefined;
  #busy = false;
  #emit: Emit | undefined;
  /** The last failure logged, so a lasting one is logged once. */
  #lastError = '';

  constructor(o: VmNetworkInterceptorOptions) {
    this.#o = o;
  }

  /** Flows whose sender no known VM was: counted, never attributed. */
  get unattributed(): number {
    return this.#unattributed;
  }

  async start(emit: Emit): Promise<void> {
    // The counters at start are history (a restarted daemon saw them already): the baseline, not news.
    await this.#poll(false);
    this.#emit = emit;
    this.#timer = setInterval(() => { void this.#poll(true); }, this.#o.intervalMs ?? 1000);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#emit = undefined;
  }

  async #poll(report: boolean): Promise<void> {
    if (this.#busy) return;
    this.#busy = true;
    try {
      const counts = await (this.#o.read ?? readProbeCounts)();
      const now = Date.now();
      const seen = new Set<string>();
      let targets: VmTarget[] | null = null;
      for (const c of counts) {
        const key = `${c.table}|${c.kind}|${c.mac}|${c.source}|${c.destination}|${c.protocol}|${c.port}`;
        seen.add(key);
        const prev = this.#flows.get(key);
        // A counter below the last reading is a new element (the old one expired): all of it is new.
        const fresh = !prev || c.packets < prev.packets;
        const delta = fresh ? c.packets : c.packets - prev.packets;
        if (!fresh && (delta === 0 || now - prev.reportedAt < (this.#o.repeatMs ?? 60_000))) continue;
        if (report && this.#emit) {
          targets ??= await this.#o.targets();
          if (!this.#report(c, delta, targets, now)) {
            const since = this.#unknownSince.get(key) ?? now;
            this.#unknownSince.set(key, since);
            // The targets may lag a VM just started: asked again next poll, for a while.
            if (now - since < (this.#o.unknownAfterMs ?? 15_000)) continue;
            this.#unattributed++;
            this.#o.log?.('vm network interceptor: a refused flow from a MAC no known VM has, not attributed', { ...c });
          }
          this.#unknownSince.delete(key);
        }
        this.#flows.set(key, { packets: c.packets, reportedAt: now });
      }
      for (const key of this.#flows.keys()) if (!seen.has(key)) this.#flows.delete(key);
      for (const key of this.#unknownSince.keys()) if (!seen.has(key)) this.#unknownSince.delete(key);
      this.#lastError = '';
    } catch (err) {
      const error = (err as Error).message;
      if (error !== this.#lastError) this.#o.log?.('vm network interceptor: reading the counters failed', { error });
      this.#lastError = error;
    } finally {
      this.#busy = false;
    }
  }

  /** Emits the flow as an event on the one VM with its MAC; false when there is no such VM. */
  #report(c: ProbeCount, packets: number, targets: VmTarget[], now: number): boolean {
    const senders = targets.filter((t) => t.mac === c.mac);
    if (senders.length !== 1) return false;
    const sender = senders[0]!;
    const victim = c.kind === 'routed' ? targets.find((t) => t.address !== null && slash24(t.address) === slash24(c.destination) && t.bridge !== sender.bridge) : undefined;
    const target = c.kind === 'host' ? 'host' : victim ? 'tenant' : 'outside';
    this.#emit!({
      time: now, tenantId: sender.tenantId, instanceId: sender.instanceId, level: sender.level, kind: 'net.blocked', priority: 'warning',
      fields: {
        'net.direction': 'out', 'net.target': target, 'net.sip': c.source, 'net.dip': c.destination, 'net.dport': c.port, 'net.proto': c.protocol,
        'net.packets': packets, 'net.smac': c.mac, ...(sender.bridge !== null ? { 'net.bridge': sender.bridge } : {}),
        ...(victim ? { 'net.dtenant': victim.tenantId, 'net.dinstance': victim.instanceId } : {}),
        ...(sender.address === c.source ? {} : { 'net.spoofed': true }),
      },
    });
    return true;
  }
}
