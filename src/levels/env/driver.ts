/**
 * `EnvDriver` (`env.isolate`): the env level. Each instance is a tenant's
 * Workers-style handler (`export default { fetch(request, env) }`) running in a
 * V8 isolate inside a sandboxed isolate-host process (see supervisor.ts), served
 * on a loopback port of its own that the gateway proxies to.
 *
 * Lifecycle, as every level (docs/lifecycle.md):
 * - create   validates the spec and the module (compiled in a host, never in the
 *            daemon), stores the code, binds the instance's port (answers 503)
 * - start    loads the module into an isolate; requests flow
 * - stop     stops admitting, lets requests in flight finish for `graceMs`, unloads
 * - pause    stops admitting (503 with Retry-After), keeps the isolate loaded
 * - resume   admits again
 * - snapshot copies code + the instance's KV namespace into its state dir
 * - restore  puts them back (instance stopped)
 * - delete   unbinds the port and removes the instance's files
 *
 * Beyond the interface: `redeploy` swaps the code of a running instance without
 * dropping a request, and `handle` serves one request without HTTP.
 */
import { readFileSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { discard } from '../../core/discard.js';
import { KeyedMutex } from '../../core/keyed-mutex.js';
import { StrataError, notFound } from '../../core/errors.js';
import type { Applied, DriverAvailability, DriverOperation, InstanceSpec, InstanceUsage, LevelDriver, ObservedInstance, SnapshotResult } from '../driver.js';
import { checkAction, type InstanceState } from '../lifecycle.js';
import { Admission } from './admission.js';
import { validationError } from '../../core/validation.js';
import { MAX_CODE_BYTES, checkHandlerSource, parseInstanceConfig, type EnvDriverOptions, type EnvInstanceConfig } from './config.js';
import { HostCalls, type CallerContext, type HostCallEvent } from './host-calls.js';
import { InstanceFiles, SAFE_ID } from './instance-files.js';
import { InstanceLog, entriesAsText } from './instance-log.js';
import type { LogOptions } from '../driver.js';
import { logStream } from '../log-stream.js';
import type { Readable } from 'node:stream';
import { KvStores } from './kv.js';
import { InstanceListener, LOOPBACK, type EnvRequest, type EnvResponse } from './listener.js';
import { loopbackOnly } from './outbound.js';
import type { IsolateLimits } from './protocol.js';
import { removeStaleCgroups } from './sandbox/cgroup.js';
import { probeSandbox, type SandboxFacilities } from './sandbox/command.js';
import { Supervisor, type InvokeResult } from './supervisor.js';

type EnvState = Exclude<InstanceState, 'creating' | 'deleted'>;

interface EnvInstance {
  spec: InstanceSpec;
  config: EnvInstanceConfig;
  code: string;
  state: EnvState;
  error: string | null;
  listener: InstanceListener;
  admission: Admission;
  caller: CallerContext;
  /** A spec given by `reconfigure`, taken at the next start. */
  pending?: InstanceSpec;
}

/** Config an env instance keeps for its life: its code changes by redeploy, its port and KV namespace never. */
const FIXED_CONFIG: Record<string, string> = {
  'config.code': 'new code is deployed with redeploy, which loads it without dropping requests',
  'config.port': "the instance's port is kept for its life",
  'config.kvNamespace': "the instance's KV namespace is kept for its life",
};

const MIN_ISOLATE_MIB = 8;
const text = (status: number, message: string, extra: Array<[string, string]> = []): EnvResponse =>
  ({ status, headers: [['content-type', 'text/plain; charset=utf-8'], ...extra], body: Buffer.from(`${message}\n`) });

export class EnvDriver implements LevelDriver {
  readonly id = 'env.isolate';
  readonly level = 'env' as const;
  readonly supports: ReadonlySet<DriverOperation> = new Set<DriverOperation>(['pause', 'resume', 'snapshot', 'restore', 'logs']);

  readonly #opts: EnvDriverOptions;
  readonly #stateDir: string;
  readonly #files: InstanceFiles;
  readonly #instances = new Map<string, EnvInstance>();
  readonly #lock = new KeyedMutex();
  #kv: KvStores | null = null;
  #calls: HostCalls | null = null;
  #supervisor: Supervisor | null = null;
  #facilities: SandboxFacilities | null = null;
  /** The guard's boundary interceptor, once it attaches (the driver exists before the guard). */
  #observer: ((event: HostCallEvent) => void) | null = null;

  constructor(opts: EnvDriverOptions = {}) {
    this.#opts = opts;
    const stateDir = opts.stateDir ?? '/var/lib/strata/env';
    this.#files = new InstanceFiles(join(stateDir, 'instances'));
    this.#stateDir = stateDir;
  }

  async provision(): Promise<DriverAvailability> {
    try {
      const o = this.#opts;
      const facilities = probeSandbox(o.sandbox ?? true);
      this.#facilities = facilities;
      if (facilities.cgroups) await removeStaleCgroups(facilities.cgroups);
      this.#kv = new KvStores(join(this.#stateDir, 'tenants'));
      this.#calls = new HostCalls(this.#kv, o.outboundPolicy ?? loopbackOnly, (e) => { o.onHostCall?.(e); this.#observer?.(e); });
      const hosts = o.hosts ?? 2;
      this.#supervisor = new Supervisor({
        hosts,
        recycleAfterRequests: o.recycleAfterRequests ?? 1_000_000,
        recycleRssBytes: (o.recycleRssMiB ?? 1536) * 1024 * 1024,
        crashStrikes: o.crashStrikes ?? 2,
        uidBase: o.uidBase ?? 64100,
        facilities,
        cgroupLimits: { memoryBytes: (o.hostMemoryMiB ?? 2048) * 1024 * 1024, cpus: o.hostCpus ?? cpus().length, pids: o.hostPids ?? 256 },
        calls: this.#calls,
        onInstanceLost: (id, why) => this.#markFailed(id, why),
      });
      await this.#supervisor.start();
      for (const stored of this.#files.all()) await this.#adoptStored(stored.spec, stored.port);
      return { available: true, reason: `V8 isolates (isolated-vm) in ${hosts} sandboxed host processes: ${facilities.description.join('; ')}` };
    } catch (e) {
      await this.cleanup().catch(() => undefined);
      return { available: false, reason: `isolate hosts could not start: ${(e as Error).message}` };
    }
  }

  async create(spec: InstanceSpec): Promise<void> {
    await this.#lock.run(spec.id, async () => {
      if (!SAFE_ID.test(spec.id)) throw validationError('id', 'letters, digits, -, _ and . only');
      if (!SAFE_ID.test(spec.tenantId)) throw validationError('tenantId', 'letters, digits, -, _ and . only');
      if (this.#instances.has(spec.id)) throw new StrataError('STRATA_ERR_CONFLICT', `env instance ${spec.id} already exists`, { id: spec.id });
      const config = parseInstanceConfig(spec.config);
      const code = await this.#validatedCode(spec.source, config.code);
      const port = config.port ?? 0;
      this.#files.create({ spec, port }, code);
      try {
        const instance = await this.#adoptStored(spec, port);
        this.#files.save({ spec, port: instance.listener.port });
      } catch (e) {
        this.#files.remove(spec.id);
        throw e;
      }
    });
  }

  async start(id: string): Promise<void> {
    await this.#lock.run(id, async () => {
      const inst = this.#get(id);
      checkAction(inst.state, 'start');
      if (inst.pending) this.#take(inst, inst.pending);
      try {
        await this.#supervisorOrThrow().place({
          id, tenantId: inst.spec.tenantId, code: inst.code, vars: inst.config.vars, limits: this.#limits(inst), caller: inst.caller,
        });
      } catch (e) {
        const message = (e as Error).message;
        inst.state = 'failed';
        inst.error = message;
        inst.caller.log.write([{ source: 'error', level: 'error', message: `the handler could not be loaded: ${message}` }]);
        throw new StrataError('STRATA_ERR_DRIVER', `env instance ${id} could not start: ${message}`, { id });
      }
      inst.state = 'running';
      inst.error = null;
      inst.admission.open();
    });
  }

  async stop(id: string, opts: { graceMs: number }): Promise<void> {
    await this.#lock.run(id, async () => {
      const inst = this.#get(id);
      checkAction(inst.state, 'stop');
      inst.admission.close();
      inst.state = 'stopped';
      const started = Date.now();
      await inst.admission.drained(opts.graceMs);
      await this.#supervisorOrThrow().remove(id, Math.max(0, opts.graceMs - (Date.now() - started)));
    });
  }

  async pause(id: string): Promise<void> {
    await this.#lock.run(id, async () => {
      const inst = this.#get(id);
      checkAction(inst.state, 'pause');
      inst.admission.close();
      inst.state = 'paused';
    });
  }

  async resume(id: string): Promise<void> {
    await this.#lock.run(id, async () => {
      const inst = this.#get(id);
      checkAction(inst.state, 'resume');
      inst.state = 'running';
      inst.admission.open();
    });
  }

  async snapshot(id: string, snapshotId: string): Promise<SnapshotResult> {
    return this.#lock.run(id, async () => {
      const inst = this.#get(id);
      if (!SAFE_ID.test(snapshotId)) throw validationError('snapshotId', 'letters, digits, -, _ and . only');
      return this.#files.writeSnapshot(id, snapshotId, inst.code, this.#kvOrThrow().dump(inst.caller.kv));
    });
  }

  async restore(id: string, snapshotId: string): Promise<void> {
    await this.#lock.run(id, async () => {
      const inst = this.#get(id);
      checkAction(inst.state, 'restore');
      const snap = SAFE_ID.test(snapshotId) ? this.#files.readSnapshot(id, snapshotId) : null;
      if (!snap) throw notFound('snapshot', snapshotId);
      this.#files.writeCode(id, snap.code);
      this.#kvOrThrow().replace(inst.caller.kv, snap.kv);
      inst.code = snap.code;
      inst.state = 'stopped';
      inst.error = null;
    });
  }

  async delete(id: string): Promise<void> {
    await this.#lock.run(id, async () => {
      const inst = this.#instances.get(id);
      if (inst) {
        inst.admission.close();
        if (inst.state === 'running' || inst.state === 'paused') await this.#supervisor?.remove(id, 0);
        await inst.listener.close();
        this.#instances.delete(id);
      }
      if (SAFE_ID.test(id)) this.#files.remove(id);
    });
  }

  async inspect(id: string): Promise<ObservedInstance | null> {
    const inst = this.#instances.get(id);
    return inst ? this.#observe(inst) : null;
  }

  async list(): Promise<ObservedInstance[]> {
    return [...this.#instances.values()].map((i) => this.#observe(i));
  }

  /** The instance's log (console output, uncaught errors, platform events) as text lines; a follower ends on delete. */
  async logs(id: string, opts: LogOptions): Promise<Readable> {
    if (!this.#instances.has(id)) throw notFound('instance', id);
    const source = logStream({
      path: this.#files.logPath(id), keep: 1, follow: opts.follow, ...(opts.tail !== undefined ? { tail: opts.tail } : {}),
      gone: () => !this.#instances.has(id),
    });
    const text = entriesAsText();
    source.on('error', (e) => text.destroy(e));
    text.on('close', () => source.destroy());
    return source.pipe(text);
  }

  /** A deleted tenant's KV file goes (or into quarantine): a later tenant never opens it, whatever its name. */
  async purgeTenant(tenantId: string, quarantine: { dir: string; prefix: string } | null): Promise<void> {
    if (!SAFE_ID.test(tenantId)) return;
    this.#kv?.closeTenant(tenantId);
    await discard(join(this.#stateDir, 'tenants', tenantId), quarantine && { dir: quarantine.dir, as: `${quarantine.prefix}env-kv` });
  }

  async cleanup(): Promise<void> {
    for (const inst of this.#instances.values()) {
      inst.admission.close();
      await inst.listener.close();
    }
    this.#instances.clear();
    await this.#supervisor?.shutdown();
    this.#supervisor = null;
    this.#kv?.close();
    this.#kv = null;
  }

  /**
   * Swaps a running (or paused) instance's code: the new module is loaded into a
   * fresh isolate while the old one keeps serving, then new requests go to the
   * new one and the old one finishes its requests before it is unloaded. A
   * stopped instance just gets the new code for its next start. Bad code is
   * refused (STRATA_ERR_VALIDATION) and the old code keeps serving.
   */
  async redeploy(id: string, next: { source?: string; code?: string }): Promise<void> {
    await this.#lock.run(id, async () => {
      const inst = this.#get(id);
      const code = await this.#validatedCode(next.source ?? null, next.code);
      if (inst.state === 'running' || inst.state === 'paused') {
        try {
          await this.#supervisorOrThrow().replaceCode(id, code, inst.config.vars, this.#limits(inst));
        } catch (e) {
          throw validationError('source', `the new handler could not be loaded: ${(e as Error).message}`);
        }
      }
      this.#files.writeCode(id, code);
      inst.code = code;
    });
  }

  /**
   * A new spec, kept for the next start: an isolate gets its memory, CPU time
   * and variables when it is placed, and requests their limits from the
   * config that start takes. Stored at once, so a restarted daemon starts it so.
   */
  async reconfigure(spec: InstanceSpec, changed: readonly string[]): Promise<Record<string, Applied>> {
    return this.#lock.run(spec.id, async () => {
      const inst = this.#get(spec.id);
      parseInstanceConfig(spec.config);
      const fixed = changed.find((f) => f in FIXED_CONFIG);
      if (fixed !== undefined) throw validationError(fixed, FIXED_CONFIG[fixed]!);
      this.#files.save({ spec, port: inst.listener.port });
      inst.pending = spec;
      return Object.fromEntries(changed.map((f) => [f, 'next-restart' as const]));
    });
  }

  /** Makes a reconfigured spec the instance's own (it is stopped: nothing is admitted meanwhile). */
  #take(inst: EnvInstance, spec: InstanceSpec): void {
    const config = parseInstanceConfig(spec.config);
    inst.spec = spec;
    inst.config = config;
    inst.admission = new Admission(config.concurrency, config.queue);
    inst.caller.outbound = config.outbound;
    inst.caller.kv = { ...inst.caller.kv, quotaBytes: Math.max(1, spec.limits.diskMiB) * 1024 * 1024 };
    delete inst.pending;
  }

  /** Serves one request to an instance, as its HTTP endpoint does. */
  async handle(id: string, request: EnvRequest): Promise<EnvResponse> {
    const inst = this.#instances.get(id);
    if (!inst) return text(404, 'Not Found');
    return this.#serve(inst, request);
  }

  /**
   * The isolate's heap against its heap limit and the CPU time its code used,
   * as its host reported them (about once a second). An isolate has no network
   * interface or disk of its own here: those are null.
   */
  async stats(id: string): Promise<InstanceUsage | null> {
    const inst = this.#instances.get(id);
    if (!inst) return null;
    const live = inst.state === 'running' || inst.state === 'paused' ? this.#supervisor?.usage(id) ?? null : null;
    return {
      cpuSeconds: live ? live.cpuNs / 1e9 : null, memoryBytes: live?.heapBytes ?? null, memoryLimitBytes: this.#limits(inst).memoryMiB * 1024 * 1024,
      netRxBytes: null, netTxBytes: null, diskBytes: null, pids: null,
    };
  }

  /** Live isolate hosts (name, pid, dedicated tenant, instances, requests, memory), for stats and tests. */
  hosts(): ReturnType<Supervisor['hosts']> {
    return this.#supervisor?.hosts() ?? [];
  }

  // ---- internals ------------------------------------------------------------

  async #serve(inst: EnvInstance, req: EnvRequest): Promise<EnvResponse> {
    if (inst.state === 'paused') return text(503, 'Service Unavailable', [['retry-after', '1']]);
    if (inst.state !== 'running') return text(503, 'Service Unavailable');
    if (!(await inst.admission.enter())) return text(503, 'Service Unavailable');
    let result: InvokeResult;
    try {
      const supervisor = this.#supervisor;
      if (!supervisor) return text(503, 'Service Unavailable');
      result = await supervisor.invoke(inst.spec.id, req.method, req.url, req.headers, req.body, inst.config.wallMs);
    } finally {
      inst.admission.leave();
    }
    if (result.ok) return { status: result.status, headers: result.headers, body: result.body };
    const log = (level: string, message: string, source: 'error' | 'platform' = 'platform'): void =>
      inst.caller.log.write([{ source, level, message }]);
    this.#observeFailure(inst, result.failure, result.detail);
    switch (result.failure) {
      case 'exception':
        log('error', `Uncaught exception handling ${req.method} ${req.url}: ${result.detail}`, 'error');
        return text(500, 'Internal Server Error');
      case 'invalid-response':
        log('error', `Invalid response to ${req.method} ${req.url}: ${result.detail}`, 'error');
        return text(500, 'Internal Server Error');
      case 'cpu':
      case 'memory':
        return text(503, 'Service Unavailable: the handler exceeded its resource limits');
      case 'timeout':
        log('warn', `${req.method} ${req.url}: ${result.detail}`);
        return text(504, 'Gateway Timeout');
      case 'crashed':
        return text(502, 'Bad Gateway');
      case 'unloaded':
        return text(503, 'Service Unavailable');
    }
  }

  /** The directory holding an instance's deployed handler (`code.js`), for the guard's baseline of it. */
  instanceDir(id: string): string {
    return this.#files.dir(id);
  }

  /**
   * Lets the guard observe the isolate boundary: every host call, every refusal
   * (`isolate.denied`), every limit hit (`isolate.limit`: cpu, memory, wall,
   * timers, kv) and every host crash under an instance (`isolate.crash`). The observer must return at once; it never
   * changes what tenant code sees. null detaches it.
   */
  observe(observer: ((event: HostCallEvent) => void) | null): void {
    this.#observer = observer;
  }

  /** The wall-clock limit and host crashes, seen per request; cpu and memory come with the isolate's reset (HostCalls.limitHit). */
  #observeFailure(inst: EnvInstance, failure: string, detail: string): void {
    const limit = failure === 'timeout' ? 'wall' : null;
    const kind = limit ? 'isolate.limit' : failure === 'crashed' ? 'isolate.crash' : null;
    if (!kind || !this.#observer) return;
    try {
      this.#observer({ time: Date.now(), tenantId: inst.spec.tenantId, instanceId: inst.spec.id, kind, fields: limit ? { limit, detail } : { detail } });
    } catch {
      // An observer's failure must never change what tenant code sees.
    }
  }

  /** Builds the in-memory instance for a stored spec and binds its port. */
  async #adoptStored(spec: InstanceSpec, port: number): Promise<EnvInstance> {
    const config = parseInstanceConfig(spec.config);
    const log = new InstanceLog(this.#files.logPath(spec.id));
    const inst: EnvInstance = {
      spec,
      config,
      code: this.#files.readCode(spec.id),
      state: 'stopped',
      error: null,
      admission: new Admission(config.concurrency, config.queue),
      listener: new InstanceListener((req) => this.#serve(inst, req), () => inst.config.maxBodyBytes),
      caller: {
        tenantId: spec.tenantId,
        instanceId: spec.id,
        kv: { tenantId: spec.tenantId, namespace: config.kvNamespace ?? spec.name, quotaBytes: Math.max(1, spec.limits.diskMiB) * 1024 * 1024 },
        outbound: config.outbound,
        log,
      },
    };
    await inst.listener.listen(port);
    this.#instances.set(spec.id, inst);
    return inst;
  }

  /** The handler code from `source` (an absolute path) or inline `code`, compiled once in a host to refuse bad modules early. */
  async #validatedCode(source: string | null, inline: string | undefined): Promise<string> {
    checkHandlerSource(source, inline);
    let code: string;
    if (inline !== undefined) code = inline;
    else {
      const path = source!;
      if (!isAbsolute(path)) throw validationError('source', 'must be an absolute path to a handler file');
      let size: number;
      try {
        const st = statSync(path);
        if (!st.isFile()) throw new Error('not a file');
        size = st.size;
      } catch {
        throw validationError('source', `no readable handler file at ${path}`);
      }
      if (size > MAX_CODE_BYTES) throw validationError('source', `handler file over ${MAX_CODE_BYTES} bytes`);
      code = readFileSync(path, 'utf8');
    }
    if (Buffer.byteLength(code) > MAX_CODE_BYTES) throw validationError('source', `handler over ${MAX_CODE_BYTES} bytes`);
    const problem = await this.#supervisorOrThrow().check(code);
    if (problem !== null) throw validationError(inline !== undefined ? 'config.code' : 'source', `not a valid module: ${problem}`);
    return code;
  }

  #limits(inst: EnvInstance): IsolateLimits {
    const ceiling = this.#opts.maxIsolateMemoryMiB ?? 128;
    return {
      memoryMiB: Math.max(MIN_ISOLATE_MIB, Math.min(inst.spec.limits.memoryMiB, ceiling)),
      cpuMs: inst.config.cpuMs,
      maxTimers: 1000,
      maxTimerMs: inst.config.wallMs,
    };
  }

  #observe(inst: EnvInstance): ObservedInstance {
    const placement = inst.state === 'running' || inst.state === 'paused' ? this.#supervisor?.describe(inst.spec.id) ?? null : null;
    return {
      id: inst.spec.id,
      state: inst.state,
      info: {
        address: LOOPBACK,
        port: inst.listener.port,
        kvNamespace: inst.caller.kv.namespace,
        ...(placement ? { host: placement.host, pid: placement.pid, generation: placement.generation, dedicatedHost: placement.dedicated } : {}),
        ...(inst.error ? { error: inst.error } : {}),
        ...(this.#facilities ? { sandbox: this.#facilities.description } : {}),
      },
    };
  }

  #markFailed(id: string, why: string): void {
    const inst = this.#instances.get(id);
    if (!inst || (inst.state !== 'running' && inst.state !== 'paused')) return;
    inst.admission.close();
    inst.state = 'failed';
    inst.error = why;
    inst.caller.log.write([{ source: 'platform', level: 'error', message: why }]);
  }

  #get(id: string): EnvInstance {
    const inst = this.#instances.get(id);
    if (!inst) throw notFound('env instance', id);
    return inst;
  }

  #supervisorOrThrow(): Supervisor {
    if (!this.#supervisor) throw new StrataError('STRATA_ERR_LEVEL_UNAVAILABLE', 'the env driver is not provisioned', { level: 'env' });
    return this.#supervisor;
  }

  #kvOrThrow(): KvStores {
    if (!this.#kv) throw new StrataError('STRATA_ERR_LEVEL_UNAVAILABLE', 'the env driver is not provisioned', { level: 'env' });
    return this.#kv;
  }
}
