/**
 * The supervisor keeps the isolate hosts and decides which instance lives on
 * which. It runs in the daemon; hosts are child processes (`host-process.ts`).
 *
 * - **Pool**: `hosts` shared hosts, kept at that size: a host that dies is
 *   replaced, with a growing back-off if replacements keep failing.
 * - **Placement**: an instance goes to the shared host with the fewest
 *   instances, or to its tenant's dedicated host.
 * - **Generations**: every load of an instance's code is a new generation. A
 *   move (redeploy, recycling, quarantine) loads the new generation first,
 *   switches new requests to it, and unloads the old one once its requests in
 *   flight are done — so moves drop nothing.
 * - **Crashes**: when a host dies, its requests in flight fail (502), its
 *   instances are reloaded on other hosts (requests arriving meanwhile wait),
 *   and every tenant that had a request in flight there gets a strike. A tenant
 *   with `crashStrikes` strikes within ten minutes is moved to a host of its own.
 * - **Recycling**: a host that served `recycleAfterRequests` requests or grew
 *   past `recycleRssMiB` is replaced by moving its instances away.
 *
 * Every message from a host is checked against what was placed there: a host
 * can speak only for the instances it holds.
 */
import type { CallerContext, HostCalls } from './host-calls.js';
import { HostProcess } from './host-process.js';
import type { HeaderList, HostMessage, InvokeFailure, IsolateLimits } from './protocol.js';
import type { SandboxFacilities } from './sandbox/command.js';

export interface PlacementSpec {
  id: string;
  tenantId: string;
  code: string;
  vars: Record<string, string>;
  limits: IsolateLimits;
  caller: CallerContext;
}

export type InvokeResult =
  | { ok: true; status: number; headers: HeaderList; body: Buffer }
  | { ok: false; failure: InvokeFailure | 'crashed' | 'timeout'; detail: string };

export interface SupervisorOptions {
  hosts: number;
  recycleAfterRequests: number;
  recycleRssBytes: number;
  crashStrikes: number;
  uidBase: number;
  facilities: SandboxFacilities;
  cgroupLimits: { memoryBytes: number; cpus: number; pids: number };
  calls: HostCalls;
  /** An instance could not be brought back after its host died. */
  onInstanceLost: (id: string, why: string) => void;
}

interface Generation {
  gen: number;
  host: HostProcess;
  inflight: number;
  retired: boolean;
  /** As its host last reported (about once a second). */
  usage?: { heapBytes: number; cpuNs: number };
}

interface Placement {
  spec: PlacementSpec;
  current: Generation | null;
  /** Every live generation (the current one and those draining), by number. */
  gens: Map<number, Generation>;
  /** Settles when `current` can take requests; replaced while the instance is re-homed. */
  ready: Promise<void>;
}

interface PendingRequest {
  host: HostProcess;
  tenantId: string;
  settle: (result: InvokeResult) => void;
}

const STRIKE_WINDOW_MS = 10 * 60_000;
/** How long a retired generation or host may take to finish its requests. */
const DRAIN_MS = 30_000;
const key = (inst: string, gen: number): string => `${inst}#${gen}`;

export class Supervisor {
  readonly #hosts = new Set<HostProcess>();
  readonly #placements = new Map<string, Placement>();
  readonly #pending = new Map<number, PendingRequest>();
  readonly #loads = new Map<string, { host: HostProcess; resolve: (ms: number) => void; reject: (e: Error) => void }>();
  readonly #checks = new Map<number, { host: HostProcess; resolve: (error: string | null) => void; reject: (e: Error) => void }>();
  readonly #strikes = new Map<string, number[]>();
  readonly #dedicated = new Set<string>();
  /** Hosts we are ending on purpose: their exit is no crash. */
  readonly #ending = new WeakSet<HostProcess>();
  #nextGen = 1;
  #nextId = 1;
  #hostSeq = 0;
  #spawnFailures = 0;
  #replenishTimer: NodeJS.Timeout | null = null;
  #closing = false;

  constructor(private readonly opts: SupervisorOptions) {}

  /** Starts the shared pool and waits until every host is ready. */
  /** Starts the shared pool; succeeds when at least one host is ready (the others are retried). */
  async start(): Promise<void> {
    const hosts = Array.from({ length: this.opts.hosts }, () => this.#spawn(null));
    const results = await Promise.allSettled(hosts.map((h) => h.ready));
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failure && results.every((r) => r.status === 'rejected')) throw failure.reason;
  }

  /** Compiles `code` in a host: null when it is a valid module without imports, else the reason. */
  async check(code: string): Promise<string | null> {
    const host = await this.#pick(null);
    const id = this.#nextId++;
    return new Promise((resolve, reject) => {
      this.#checks.set(id, { host, resolve, reject });
      host.send({ t: 'check', id, code });
    });
  }

  /** Loads an instance into a host; throws with the tenant-facing reason when its module fails to load. */
  async place(spec: PlacementSpec): Promise<void> {
    const p: Placement = { spec, current: null, gens: new Map(), ready: Promise.resolve() };
    this.#placements.set(spec.id, p);
    p.ready = this.#loadSomewhere(p).then((g) => { p.current = g; });
    try {
      await p.ready;
    } catch (e) {
      this.#placements.delete(spec.id);
      throw e;
    }
  }

  /** Swaps an instance's code: the new generation serves before the old one is unloaded. */
  async replaceCode(id: string, code: string, vars: Record<string, string>, limits: IsolateLimits): Promise<void> {
    const p = this.#placements.get(id);
    if (!p) throw new Error(`instance ${id} is not loaded`);
    const spec = { ...p.spec, code, vars, limits };
    const next = await this.#loadSomewhere({ ...p, spec });
    p.spec = spec;
    p.gens.set(next.gen, next);
    this.#switchTo(p, next);
  }

  /** Stops routing to an instance, lets requests in flight finish for up to `graceMs`, then unloads it. */
  async remove(id: string, graceMs: number): Promise<void> {
    const p = this.#placements.get(id);
    if (!p) return;
    this.#placements.delete(id);
    const deadline = Date.now() + graceMs;
    while (Date.now() < deadline && [...p.gens.values()].some((g) => g.inflight > 0)) await sleep(10);
    for (const g of p.gens.values()) this.#unload(p, g);
  }

  /** Runs one request through an instance's current generation. Never throws. */
  async invoke(id: string, method: string, url: string, headers: HeaderList, body: Buffer, wallMs: number): Promise<InvokeResult> {
    const p = this.#placements.get(id);
    if (!p) return { ok: false, failure: 'unloaded', detail: 'instance not loaded' };
    try {
      await p.ready;
    } catch (e) {
      return { ok: false, failure: 'unloaded', detail: (e as Error).message };
    }
    const g = p.current;
    if (!g || !g.host.alive) return { ok: false, failure: 'crashed', detail: 'isolate host is gone' };
    const reqId = this.#nextId++;
    g.inflight++;
    g.host.requests++;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await new Promise<InvokeResult>((resolve) => {
        this.#pending.set(reqId, { host: g.host, tenantId: p.spec.tenantId, settle: resolve });
        timer = setTimeout(() => resolve({ ok: false, failure: 'timeout', detail: `no response within ${wallMs} ms` }), wallMs);
        g.host.send({ t: 'req', id: reqId, inst: id, gen: g.gen, method, url, headers }, body);
      });
    } finally {
      clearTimeout(timer);
      this.#pending.delete(reqId);
      g.inflight--;
      if (g.retired && g.inflight === 0) this.#unload(p, g);
      if (g.host.requests >= this.opts.recycleAfterRequests) this.#recycle(g.host);
    }
  }

  /** Where an instance runs now, for inspect. */
  describe(id: string): { host: string; pid: number; generation: number; dedicated: boolean } | null {
    const g = this.#placements.get(id)?.current;
    return g ? { host: g.host.name, pid: g.host.pid, generation: g.gen, dedicated: g.host.dedicatedTo !== null } : null;
  }

  /** The current generation's heap and CPU time as its host last reported them; null before the first report. */
  usage(id: string): { heapBytes: number; cpuNs: number } | null {
    return this.#placements.get(id)?.current?.usage ?? null;
  }

  /** Every live host, for stats and tests. */
  hosts(): Array<{ name: string; pid: number; dedicatedTo: string | null; instances: number; requests: number; rss: number; memoryBytes: number }> {
    return [...this.#hosts].filter((h) => h.alive).map((h) => ({
      name: h.name, pid: h.pid, dedicatedTo: h.dedicatedTo, instances: h.placed.size, requests: h.requests, rss: h.rss, memoryBytes: h.memoryBytes(),
    }));
  }

  async shutdown(): Promise<void> {
    this.#closing = true;
    if (this.#replenishTimer) clearTimeout(this.#replenishTimer);
    const hosts = [...this.#hosts];
    for (const h of hosts) this.#ending.add(h);
    await Promise.all(hosts.map((h) => h.shutdown()));
    this.#placements.clear();
  }

  // ---- hosts ----------------------------------------------------------------

  #spawn(dedicatedTo: string | null): HostProcess {
    const seq = this.#hostSeq++;
    const host = new HostProcess({
      name: `${dedicatedTo ? 'd' : 'h'}${seq}`,
      dedicatedTo,
      facilities: this.opts.facilities,
      uid: this.opts.uidBase + (seq % 1000),
      cgroupLimits: this.opts.cgroupLimits,
      onMessage: (h, m, body) => this.#onMessage(h, m, body),
      onExit: (h, why) => this.#onExit(h, why),
    });
    this.#hosts.add(host);
    host.ready.then(() => { this.#spawnFailures = 0; }, () => { this.#spawnFailures++; });
    return host;
  }

  /** A ready host for a tenant: its dedicated one, or the least-loaded shared one; spawns when none is left. */
  async #pick(tenantId: string | null, avoid?: HostProcess): Promise<HostProcess> {
    for (let attempt = 0; attempt < 3 && !this.#closing; attempt++) {
      const dedicated = tenantId !== null && this.#dedicated.has(tenantId);
      const candidates = [...this.#hosts].filter((h) => h.alive && !h.retiring && h !== avoid
        && (dedicated ? h.dedicatedTo === tenantId : h.dedicatedTo === null));
      candidates.sort((a, b) => a.placed.size - b.placed.size);
      const host = candidates[0] ?? this.#spawn(dedicated ? tenantId : null);
      try {
        await host.ready;
        if (host.alive) return host;
      } catch {
        // It died starting; try another.
      }
    }
    throw new Error('no isolate host could be started');
  }

  /** Loads a new generation of `p` on a host chosen for its tenant; one retry if that host dies meanwhile. */
  async #loadSomewhere(p: Placement, avoid?: HostProcess): Promise<Generation> {
    let lastError: Error = new Error('not loaded');
    for (let attempt = 0; attempt < 2; attempt++) {
      const host = await this.#pick(p.spec.tenantId, avoid);
      const gen = this.#nextGen++;
      const g: Generation = { gen, host, inflight: 0, retired: false };
      const k = key(p.spec.id, gen);
      host.placed.add(k);
      p.gens.set(gen, g);
      try {
        await new Promise<number>((resolve, reject) => {
          this.#loads.set(k, { host, resolve, reject });
          const { code, vars, limits } = p.spec;
          host.send({ t: 'load', inst: p.spec.id, gen, code, vars, limits });
        });
        return g;
      } catch (e) {
        host.placed.delete(k);
        p.gens.delete(gen);
        lastError = e as Error;
        if (!(e instanceof HostDied)) throw e;
        avoid = host;
      } finally {
        this.#loads.delete(k);
      }
    }
    throw lastError;
  }

  /** Makes `next` the generation that takes new requests; the old one drains, then unloads. */
  #switchTo(p: Placement, next: Generation): void {
    const old = p.current;
    p.current = next;
    if (old && old !== next) {
      old.retired = true;
      if (old.inflight === 0) this.#unload(p, old);
      else setTimeout(() => this.#unload(p, old), DRAIN_MS).unref();
    }
  }

  #unload(p: Placement, g: Generation): void {
    const k = key(p.spec.id, g.gen);
    if (!g.host.placed.delete(k)) return;
    p.gens.delete(g.gen);
    g.host.send({ t: 'unload', inst: p.spec.id, gen: g.gen });
    if (g.host.dedicatedTo !== null && g.host.placed.size === 0 && !this.#placementsOf(g.host.dedicatedTo).length) this.#end(g.host);
  }

  #placementsOf(tenantId: string): Placement[] {
    return [...this.#placements.values()].filter((p) => p.spec.tenantId === tenantId);
  }

  /** Moves an instance to a freshly picked host without dropping requests. */
  async #move(p: Placement, avoid: HostProcess): Promise<void> {
    try {
      const next = await this.#loadSomewhere(p, avoid);
      if (this.#placements.get(p.spec.id) !== p) { this.#unload(p, next); return; }
      this.#switchTo(p, next);
    } catch (e) {
      p.spec.caller.log.write([{ source: 'platform', level: 'error', message: `could not move to a new isolate host: ${(e as Error).message}` }]);
    }
  }

  /** Replaces a host that served its share: moves its instances, then ends it once drained. */
  #recycle(host: HostProcess): void {
    if (host.retiring || !host.alive || this.#closing) return;
    host.retiring = true;
    if (host.dedicatedTo === null) this.#replenish();
    const moving = [...this.#placements.values()].filter((p) => p.current?.host === host);
    void Promise.all(moving.map((p) => this.#move(p, host))).then(async () => {
      const deadline = Date.now() + DRAIN_MS;
      while (Date.now() < deadline && [...this.#pending.values()].some((r) => r.host === host)) await sleep(50);
      this.#end(host);
    });
  }

  #end(host: HostProcess): void {
    this.#ending.add(host);
    void host.shutdown();
  }

  /** Brings the shared pool back to size; backs off while hosts fail to start. */
  #replenish(): void {
    if (this.#closing || this.#replenishTimer) return;
    const delay = this.#spawnFailures === 0 ? 0 : Math.min(10_000, 100 * 2 ** this.#spawnFailures);
    this.#replenishTimer = setTimeout(() => {
      this.#replenishTimer = null;
      if (this.#closing) return;
      const shared = [...this.#hosts].filter((h) => h.alive && !h.retiring && h.dedicatedTo === null).length;
      for (let i = shared; i < this.opts.hosts; i++) this.#spawn(null);
    }, delay);
  }

  #onExit(host: HostProcess, why: string): void {
    this.#hosts.delete(host);
    const crashed = !this.#ending.has(host) && !this.#closing;
    const struck = new Set<string>();
    for (const [id, r] of this.#pending) {
      if (r.host !== host) continue;
      struck.add(r.tenantId);
      this.#pending.delete(id);
      r.settle({ ok: false, failure: 'crashed', detail: why });
    }
    for (const [k, load] of this.#loads) {
      if (load.host !== host) continue;
      struck.add(this.#placements.get(k.split('#')[0]!)?.spec.tenantId ?? '');
      load.reject(new HostDied(why));
    }
    for (const [, check] of this.#checks) if (check.host === host) check.reject(new HostDied(why));
    if (this.#closing) return;
    if (host.dedicatedTo === null) this.#replenish();
    for (const p of this.#placements.values()) {
      for (const g of [...p.gens.values()]) if (g.host === host && g !== p.current) p.gens.delete(g.gen);
      if (p.current?.host !== host) continue;
      p.gens.delete(p.current.gen);
      p.current = null;
      if (crashed) p.spec.caller.log.write([{ source: 'platform', level: 'warn', message: `isolate host ${host.name} died; reloading on another host` }]);
      p.ready = this.#loadSomewhere(p, host).then((g) => { p.current = g; }, (e: Error) => {
        if (this.#placements.get(p.spec.id) === p) this.#placements.delete(p.spec.id);
        this.opts.onInstanceLost(p.spec.id, `isolate host died and the instance could not be reloaded: ${e.message}`);
        throw e;
      });
      p.ready.catch(() => undefined);
    }
    if (crashed) for (const tenantId of struck) if (tenantId) this.#strike(tenantId);
  }

  /** Counts a host crash against a tenant; at `crashStrikes` its instances move to a host of their own. */
  #strike(tenantId: string): void {
    const now = Date.now();
    const times = (this.#strikes.get(tenantId) ?? []).filter((t) => now - t < STRIKE_WINDOW_MS);
    times.push(now);
    this.#strikes.set(tenantId, times);
    if (times.length < this.opts.crashStrikes || this.#dedicated.has(tenantId)) return;
    this.#dedicated.add(tenantId);
    for (const p of this.#placementsOf(tenantId)) {
      p.spec.caller.log.write([{ source: 'platform', level: 'warn', message: `this tenant's code crashed isolate hosts ${times.length} times; moving it to a dedicated host` }]);
      void p.ready.then(() => (p.current && p.current.host.dedicatedTo === null ? this.#move(p, p.current.host) : undefined), () => undefined);
    }
  }

  /** Tenants moved to hosts of their own, for inspect and tests. */
  isDedicated(tenantId: string): boolean {
    return this.#dedicated.has(tenantId);
  }

  // ---- messages -------------------------------------------------------------

  /** The placement and generation a host may speak for, or null when it holds no such thing. */
  #owned(host: HostProcess, inst: unknown, gen: unknown): Placement | null {
    if (typeof inst !== 'string' || typeof gen !== 'number') return null;
    const p = this.#placements.get(inst);
    return p && p.gens.get(gen)?.host === host ? p : null;
  }

  #onMessage(host: HostProcess, m: HostMessage, body: Buffer): void {
    switch (m.t) {
      case 'res': {
        const r = this.#pending.get(m.id);
        if (r?.host !== host) return;
        r.settle({ ok: true, status: m.status, headers: m.headers, body: Buffer.from(body) });
        return;
      }
      case 'res-failed': {
        const r = this.#pending.get(m.id);
        if (r?.host !== host) return;
        r.settle({ ok: false, failure: m.failure, detail: String(m.detail) });
        return;
      }
      case 'loaded':
      case 'load-failed': {
        const load = this.#loads.get(key(m.inst, m.gen));
        if (load?.host !== host) return;
        if (m.t === 'loaded') load.resolve(m.ms);
        else load.reject(new Error(String(m.error)));
        return;
      }
      case 'checked': {
        const check = this.#checks.get(m.id);
        if (check?.host !== host) return;
        this.#checks.delete(m.id);
        check.resolve(m.error);
        return;
      }
      case 'call': {
        const p = this.#owned(host, m.inst, m.gen);
        const reply = (ok: boolean, value: unknown, replyBody?: Uint8Array): void =>
          host.send({ t: 'reply', inst: m.inst, gen: m.gen, call: m.call, ok, value, ...(replyBody ? { binary: true } : {}) }, replyBody);
        if (!p) { reply(false, 'unknown instance'); return; }
        void this.opts.calls.call(p.spec.caller, String(m.kind), m.fields ?? {}, body.length > 0 ? new Uint8Array(body) : null)
          .then((a) => reply(a.ok, a.value, a.body));
        return;
      }
      case 'events': {
        if (!Array.isArray(m.events)) return;
        const byInst = new Map<string, typeof m.events>();
        for (const e of m.events) {
          if (typeof e?.inst !== 'string') continue;
          byInst.set(e.inst, [...(byInst.get(e.inst) ?? []), e]);
        }
        for (const [inst, events] of byInst) {
          const p = this.#placements.get(inst);
          if (!p || ![...p.gens.values()].some((g) => g.host === host)) continue;
          this.opts.calls.events(p.spec.caller, events.map((e) => ({ time: Number(e.time) || Date.now(), kind: String(e.kind), fields: e.fields ?? {} })));
        }
        return;
      }
      case 'reset': {
        const p = this.#owned(host, m.inst, m.gen);
        p?.spec.caller.log.write([{ source: 'platform', level: 'error', message: `isolate reset (${m.reason}): ${String(m.detail)}` }]);
        // Reported here, not per failed request: a reset from a timer fails no request, and one from a request may fail several.
        if (p && (m.reason === 'cpu' || m.reason === 'memory')) this.opts.calls.limitHit(p.spec.caller, m.reason, String(m.detail));
        return;
      }
      case 'stats':
        host.rss = Number(m.rss) || 0;
        for (const u of Array.isArray(m.usage) ? m.usage : []) {
          const g = this.#owned(host, u.inst, u.gen)?.gens.get(u.gen);
          if (g) g.usage = { heapBytes: Number(u.heapBytes) || 0, cpuNs: Number(u.cpuNs) || 0 };
        }
        if (host.memoryBytes() > this.opts.recycleRssBytes) this.#recycle(host);
        return;
    }
  }
}

/** A load or check failed because its host died, not because of the code. */
class HostDied extends Error {}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
