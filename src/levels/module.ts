/**
 * A level is a module (Caddy's `modules.go`): one object per level that says
 * everything the rest of Strata may know about it — how to build its driver,
 * which instance specs it takes (checked at the API, before anything is
 * queued), and what the guard can do with its instances (levers, memory in
 * forensic snapshots, kernel introspection, interceptors). The control plane
 * and the guard ask the registry for these; they never name a level or a
 * driver class.
 *
 * A module only reaches into drivers it `owns` (its own class): a test double
 * registered for the same level gets the lifecycle and nothing else.
 */
import type { Logger } from 'pino';
import type { GuardEvent } from '../core/guard-event.js';
import type { Interceptor } from '../core/interceptor.js';
import type { Store } from '../store/store.js';
import type { Instance } from '../store/types.js';
import type { InstanceLimits, LevelDriver } from './driver.js';
import type { Level } from './ids.js';
import type { NetworkPlan } from './network-option.js';

/** What a daemon tells a module when it builds the module's driver. */
export interface LevelContext {
  /** The daemon's data dir; a level keeps its state under `<dataDir>/<level>`. */
  dataDir: string;
  /** The front door's host ports: the only host ports containers and VMs may reach. */
  gatewayPorts?: number[];
  /** The level's network plan, for levels that hand out addresses; two daemons on one machine need apart ones. */
  network?: NetworkPlan;
}

/** The part of an instance spec a level checks before anything is queued. */
export interface LevelInput {
  source: string | null;
  limits: InstanceLimits;
  /** The level's own config: the control plane's keys (the restart policy) already taken out. */
  config: Record<string, unknown>;
}

/** An instance's files as the guard baselines them. */
export interface InstanceTree {
  root: string;
  include: string[];
  /** Only these files are watched with inotify (others beside them change all the time). */
  files?: string[];
  /** Recovered by copying the known-good files back (not by a replacement). */
  keepCopies?: boolean;
}

/** A check of a guest kernel's code in memory: a baseline once it has booted, then checks against it. */
export interface KernelWatch {
  baseline(): Promise<void>;
  /** One check, as the guard event it reports. */
  check(): Promise<GuardEvent>;
}

/** What the guard can do to a live instance beyond the lifecycle calls every driver has. */
export interface InstanceLevers {
  /** The tree the instance's files live in on the host, while it runs; null where the host cannot see them (a VM's disk). */
  tree(instance: Instance): InstanceTree | null;
  /** Caps the instance's CPU at `vcpus`. */
  setCpu(instance: Instance, vcpus: number): Promise<void>;
  /** Current CPU cap, in CPUs (null: none). */
  cpu(instance: Instance): Promise<number | null>;
  /** Cuts (false) or restores (true) the instance's network. */
  setNetwork(instance: Instance, up: boolean): Promise<void>;
  network(instance: Instance): Promise<boolean | null>;
  /**
   * The instance's current start as the level's guard events name it
   * (`instance.generation`), null when it does not run; absent for levels whose
   * events carry none. The actuator compares it before it acts.
   */
  generation?(instance: Instance): string | null;
  /** Whether the level's snapshots hold the instance's memory (a forensic snapshot then shows what ran). */
  readonly snapshotsMemory: boolean;
  /**
   * Kernel introspection, for levels that run their own kernel: the watch over
   * a running instance's kernel text; `'unmapped'` when its kernel has no map
   * of where its text is (it still counts as booted); null while it cannot be
   * had (no monitor connection, no image).
   */
  kernelWatch?(instance: Instance): Promise<KernelWatch | 'unmapped' | null>;
}

/** What a level's interceptors are given to find who owns what they see. */
export interface InterceptorContext {
  store: Store;
  log: Logger;
}

/**
 * Interceptors shared by every level that names the same source (the vm and emu
 * levels watch their VMs with one set): made once, over all of those levels' drivers.
 */
export interface InterceptorSource<D extends LevelDriver = LevelDriver> {
  interceptors(drivers: readonly D[], ctx: InterceptorContext): Interceptor[];
}

export interface LevelModule<D extends LevelDriver = LevelDriver> {
  readonly id: Level;
  /** Builds the level's driver for one daemon. */
  driver(ctx: LevelContext): D;
  /** Whether `driver` is this module's own, so that its levers and interceptors may reach into it. */
  owns(driver: LevelDriver): driver is D;
  /** Throws `STRATA_ERR_VALIDATION` naming the field of the first thing the level refuses. */
  validate(input: LevelInput): void;
  /** The guard's levers on one of this module's drivers. */
  levers?(driver: D): InstanceLevers;
  interceptors?: InterceptorSource<D>;
}
