/**
 * An in-memory `LevelDriver` for tests: no processes, no root. It keeps to the
 * shared state machine as a real driver must (a call in the wrong state throws),
 * records every call, and lets a test script the trouble a real machine makes:
 * a failing call, an orphan left by a crash, a process that died on its own, a
 * slow call. Test double only; never registered by the product.
 */
import { createHash } from 'node:crypto';
import { PassThrough, Readable } from 'node:stream';
import { InvalidStateTransition, StrataError } from '../../src/core/errors.js';
import type {
  DriverAvailability,
  DriverOperation,
  ExecSession,
  InstanceSpec,
  LevelDriver,
  ObservedInstance,
  SnapshotResult,
} from '../../src/levels/driver.js';
import { checkAction } from '../../src/levels/lifecycle.js';
import type { Level } from '../../src/levels/ids.js';

export type FakeCall =
  | 'provision' | 'create' | 'start' | 'stop' | 'pause' | 'resume' | 'snapshot' | 'restore' | 'delete' | 'inspect' | 'list' | 'cleanup'
  | 'clone' | 'moveIn' | 'moveOut' | 'logs' | 'exec';
type FakeState = ObservedInstance['state'];

export interface FakeDriverOptions {
  /** Default "<level>.fake". */
  id?: string;
  /** Default "os". */
  level?: Level;
  /** Default pause, resume, snapshot, restore; clone, move, logs and exec (whose methods it then has) when listed. */
  supports?: Iterable<DriverOperation>;
  /** What provision answers; default available. */
  availability?: DriverAvailability;
}

interface FakeInstance {
  /** null for an orphan seeded by a test: nobody created it through this driver. */
  spec: InstanceSpec | null;
  state: FakeState;
  pid: number | null;
}

interface Failure {
  id: string | undefined;
  error: Error;
  remaining: number;
}

export class FakeDriver implements LevelDriver {
  readonly id: string;
  readonly level: Level;
  readonly supports: ReadonlySet<DriverOperation>;
  /** Every call in order, with the instance id where there is one. */
  readonly calls: Array<{ op: FakeCall; id?: string }> = [];
  /** Most calls of one kind that were in flight at once, e.g. to prove the reconciler never overlaps. */
  readonly maxInFlight = new Map<FakeCall, number>();

  readonly #availability: DriverAvailability;
  readonly #instances = new Map<string, FakeInstance>();
  readonly #snapshots = new Map<string, { instanceId: string; digest: string }>();
  readonly #failures = new Map<FakeCall, Failure[]>();
  readonly #gates = new Map<FakeCall, Promise<void>>();
  readonly #inFlight = new Map<FakeCall, number>();
  /** Receivers of a move waiting on their "socket", by socket. */
  readonly #incoming = new Map<string, { id: string; received: boolean }>();
  #nextPid = 1000;


  constructor(opts: FakeDriverOptions = {}) {
    this.level = opts.level ?? 'os';
    this.id = opts.id ?? `${this.level}.fake`;
    this.supports = new Set(opts.supports ?? ['pause', 'resume', 'snapshot', 'restore']);
    this.#availability = opts.availability ?? { available: true, reason: 'in-memory fake' };
    // The optional methods exist only when listed, as on a real driver; a subclass's own stays.
    const self = this as LevelDriver;
    if (this.supports.has('clone')) self.clone ??= (spec, from) => this.#clone(spec, from);
    if (this.supports.has('move')) {
      self.moveIn ??= (spec, send) => this.#moveIn(spec, send);
      self.moveOut ??= (id, socket, confirm) => this.#moveOut(id, socket, confirm);
    }
    if (this.supports.has('logs')) self.logs ??= (id) => this.#do('logs', id, () => (this.#get(id), Readable.from([`${id} started\n`])));
    if (this.supports.has('exec')) self.exec ??= (id, argv) => this.#exec(id, argv);
  }

  // Scripting, for tests.

  /** Makes the next `times` calls of `op` (for `id` only, when given) throw `error`. */
  failOn(op: FakeCall, opts: { id?: string; times?: number; error?: Error } = {}): void {
    const list = this.#failures.get(op) ?? [];
    list.push({ id: opts.id, error: opts.error ?? new Error(`fake ${op} failure`), remaining: opts.times ?? 1 });
    this.#failures.set(op, list);
  }

  /** Makes calls of `op` wait until the returned function is called. */
  block(op: FakeCall): () => void {
    let release!: () => void;
    this.#gates.set(op, new Promise<void>((resolve) => (release = resolve)));
    return () => {
      this.#gates.delete(op);
      release();
    };
  }

  /** Something the driver holds that nobody created through it: what a crash leaves behind. */
  seedOrphan(id: string, state: FakeState = 'running'): void {
    this.#instances.set(id, { spec: null, state, pid: state === 'stopped' ? null : this.#nextPid++ });
  }

  /** Puts an instance in a state without a call, as a machine does to a real one. */
  seed(spec: InstanceSpec, state: FakeState): void {
    this.#instances.set(spec.id, { spec, state, pid: state === 'running' || state === 'paused' ? this.#nextPid++ : null });
  }

  /** The instance's process died: `failed` (crashed) or `stopped` (exited cleanly). */
  simulateExit(id: string, state: 'failed' | 'stopped' = 'failed'): void {
    const instance = this.#get(id);
    instance.state = state;
    instance.pid = null;
  }

  /** The driver lost every trace of the instance, as after a reboot wipes runtime state. */
  simulateVanish(id: string): void {
    this.#instances.delete(id);
  }

  callsOf(op: FakeCall): string[] {
    return this.calls.filter((c) => c.op === op).map((c) => c.id ?? '');
  }

  stateOf(id: string): FakeState | null {
    return this.#instances.get(id)?.state ?? null;
  }

  specOf(id: string): InstanceSpec | null {
    return this.#instances.get(id)?.spec ?? null;
  }

  // LevelDriver.

  provision(): Promise<DriverAvailability> {
    return this.#do('provision', undefined, () => ({ ...this.#availability }));
  }

  create(spec: InstanceSpec): Promise<void> {
    return this.#do('create', spec.id, () => {
      if (spec.level !== this.level) throw new StrataError('STRATA_ERR_CONFIG', `driver ${this.id} serves ${this.level}, not ${spec.level}`);
      if (this.#instances.has(spec.id)) throw new StrataError('STRATA_ERR_CONFLICT', `instance '${spec.id}' already exists`);
      this.#instances.set(spec.id, { spec, state: 'stopped', pid: null });
    });
  }

  start(id: string): Promise<void> {
    return this.#transition('start', id, (i) => (i.pid = this.#nextPid++));
  }

  stop(id: string, _opts: { graceMs: number }): Promise<void> {
    return this.#transition('stop', id, (i) => (i.pid = null));
  }

  pause(id: string): Promise<void> {
    return this.#transition('pause', id);
  }

  resume(id: string): Promise<void> {
    return this.#transition('resume', id);
  }

  snapshot(id: string, snapshotId: string): Promise<SnapshotResult> {
    return this.#do('snapshot', id, () => {
      this.#supported('snapshot');
      checkAction(this.#get(id).state, 'snapshot');
      const digest = createHash('sha256').update(`${id}/${snapshotId}`).digest('hex');
      this.#snapshots.set(snapshotId, { instanceId: id, digest });
      return { sizeBytes: 4096, digest };
    });
  }

  restore(id: string, snapshotId: string): Promise<void> {
    return this.#do('restore', id, () => {
      this.#supported('restore');
      const instance = this.#get(id);
      if (!this.#snapshots.has(snapshotId)) throw new StrataError('STRATA_ERR_NOT_FOUND', `snapshot '${snapshotId}' not found`);
      instance.state = checkAction(instance.state, 'restore') as FakeState;
    });
  }

  delete(id: string): Promise<void> {
    return this.#do('delete', id, () => {
      this.#instances.delete(id);
      for (const [snapshotId, s] of this.#snapshots) if (s.instanceId === id) this.#snapshots.delete(snapshotId);
    });
  }

  inspect(id: string): Promise<ObservedInstance | null> {
    return this.#do('inspect', id, () => {
      const instance = this.#instances.get(id);
      return instance ? this.#observe(id, instance) : null;
    });
  }

  list(): Promise<ObservedInstance[]> {
    return this.#do('list', undefined, () => [...this.#instances].map(([id, instance]) => this.#observe(id, instance)));
  }

  cleanup(): Promise<void> {
    return this.#do('cleanup', undefined, () => undefined);
  }

  // Internals.

  #clone(spec: InstanceSpec, from: { instanceId: string; snapshotId: string }): Promise<void> {
    return this.#do('clone', spec.id, () => {
      const snapshot = this.#snapshots.get(from.snapshotId);
      if (!snapshot || snapshot.instanceId !== from.instanceId) throw new StrataError('STRATA_ERR_NOT_FOUND', `snapshot '${from.snapshotId}' not found`);
      if (this.#instances.has(spec.id)) throw new StrataError('STRATA_ERR_CONFLICT', `instance '${spec.id}' already exists`);
      this.#instances.set(spec.id, { spec, state: 'stopped', pid: null });
    });
  }

  /** A move's receiver: made here stopped, running once a sender has moved into its socket; removed again otherwise. */
  async #moveIn(spec: InstanceSpec, send: (socket: string) => Promise<void>): Promise<void> {
    await this.create(spec);
    const socket = `fake-move:${spec.id}`;
    const incoming = { id: spec.id, received: false };
    this.#incoming.set(socket, incoming);
    try {
      await this.#do('moveIn', spec.id, () => undefined);
      await send(socket);
      if (!incoming.received) throw new StrataError('STRATA_ERR_DRIVER', `nothing was moved into ${spec.id}`);
      this.#get(spec.id).state = 'running';
      this.#get(spec.id).pid = this.#nextPid++;
    } catch (e) {
      this.#instances.delete(spec.id);
      throw e;
    } finally {
      this.#incoming.delete(socket);
    }
  }

  async #moveOut(id: string, socket: string, confirm?: () => Promise<void>): Promise<void> {
    await this.#do('moveOut', id, () => {
      checkAction(this.#get(id).state, 'pause');
      const incoming = this.#incoming.get(socket);
      if (!incoming) throw new StrataError('STRATA_ERR_DRIVER', `no receiver on ${socket}`);
      incoming.received = true;
    });
    await confirm?.();
    this.#instances.delete(id);
  }

  /** `echo ARGS…` prints its arguments; any other command is not found (127), as in a shell. */
  #exec(id: string, argv: readonly string[]): Promise<ExecSession> {
    return this.#do('exec', id, () => {
      const state = this.#get(id).state;
      if (state !== 'running') throw new InvalidStateTransition(state, 'running', 'exec in');
      const stdout = new PassThrough();
      stdout.end(argv[0] === 'echo' ? `${argv.slice(1).join(' ')}\n` : '');
      return { stdin: new PassThrough(), stdout, stderr: null, resize: () => undefined, kill: () => undefined, exit: Promise.resolve(argv[0] === 'echo' ? 0 : 127) };
    });
  }

  #observe(id: string, instance: FakeInstance): ObservedInstance {
    return { id, state: instance.state, info: instance.pid === null ? {} : { pid: instance.pid } };
  }

  #transition(op: 'start' | 'stop' | 'pause' | 'resume', id: string, effect?: (i: FakeInstance) => void): Promise<void> {
    return this.#do(op, id, () => {
      if (op === 'pause' || op === 'resume') this.#supported(op);
      const instance = this.#get(id);
      instance.state = checkAction(instance.state, op) as FakeState;
      effect?.(instance);
    });
  }

  #supported(op: DriverOperation): void {
    if (!this.supports.has(op)) throw new StrataError('STRATA_ERR_UNSUPPORTED', `the fake ${this.level} driver cannot ${op}`, { op });
  }

  #get(id: string): FakeInstance {
    const instance = this.#instances.get(id);
    if (!instance) throw new StrataError('STRATA_ERR_NOT_FOUND', `instance '${id}' not found`);
    return instance;
  }

  /** Records the call, waits at a gate, fails when told to, then runs `body` — always asynchronously, as real drivers answer. */
  async #do<T>(op: FakeCall, id: string | undefined, body: () => T): Promise<T> {
    this.calls.push(id === undefined ? { op } : { op, id });
    const inFlight = (this.#inFlight.get(op) ?? 0) + 1;
    this.#inFlight.set(op, inFlight);
    this.maxInFlight.set(op, Math.max(this.maxInFlight.get(op) ?? 0, inFlight));
    try {
      await (this.#gates.get(op) ?? Promise.resolve());
      const failure = this.#failures.get(op)?.find((f) => f.remaining > 0 && (f.id === undefined || f.id === id));
      if (failure) {
        failure.remaining--;
        throw failure.error;
      }
      return body();
    } finally {
      this.#inFlight.set(op, (this.#inFlight.get(op) ?? 1) - 1);
    }
  }
}
