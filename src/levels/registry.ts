/**
 * The level drivers this daemon runs with, at most one per level, and what
 * their level modules (`module.ts`) say about them.
 *
 * Drivers have a lifecycle (Caddy's `modules.go`): `register` them,
 * `provisionAll` once at start-up (each probes the machine and says whether it
 * can work here), ask `forLevel` for the one that serves a level, and
 * `cleanupAll` at shutdown. A driver that cannot work here — or whose provision
 * throws — is kept as unavailable with its reason, so `strata info` can say why
 * and the daemon still serves the other levels.
 *
 * A registered driver that its level's module owns gets the module's checks,
 * levers and interceptors; any other (a test double) only the lifecycle.
 */
import { StrataError, messageOf } from '../core/errors.js';
import type { Interceptor } from '../core/interceptor.js';
import type { LevelId, Quota } from '../store/types.js';
import { LEVEL_IDS, isLevel, type Level } from './ids.js';
import type { LevelDriver } from './driver.js';
import type { InstanceLevers, InterceptorContext, InterceptorSource, LevelInput, LevelModule } from './module.js';

export interface LevelDescription {
  level: Level;
  /** Driver id, or null when no driver for this level is installed. */
  driver: string | null;
  available: boolean;
  reason: string;
}

interface Entry {
  driver: LevelDriver;
  /** The module that owns `driver`; null for a driver no module knows. */
  module: LevelModule | null;
  /** The module's levers on `driver`, made once (they keep state, such as a VM's link). */
  levers: InstanceLevers | null;
  /** null until provisioned. */
  availability: { available: boolean; reason: string } | null;
}


export class DriverRegistry {
  readonly #byLevel = new Map<LevelId, Entry>();
  readonly #ids = new Set<string>();

  /** `modules`: the level modules that may own the drivers registered here. */
  constructor(private readonly modules: readonly LevelModule[] = []) {}

  /** Refuses a second driver with the same id or for the same level. */
  register(driver: LevelDriver): this {
    if (!isLevel(driver.level)) {
      throw new StrataError('STRATA_ERR_CONFIG', `driver '${driver.id}' has unknown level '${driver.level}'`, { driver: driver.id, level: driver.level });
    }
    if (this.#ids.has(driver.id)) {
      throw new StrataError('STRATA_ERR_CONFIG', `a driver with id '${driver.id}' is already registered`, { driver: driver.id });
    }
    const existing = this.#byLevel.get(driver.level);
    if (existing) {
      throw new StrataError('STRATA_ERR_CONFIG', `level '${driver.level}' already has driver '${existing.driver.id}'; cannot add '${driver.id}'`, {
        level: driver.level, driver: driver.id, existing: existing.driver.id,
      });
    }
    const module = this.modules.find((m) => m.id === driver.level && m.owns(driver)) ?? null;
    this.#ids.add(driver.id);
    this.#byLevel.set(driver.level, { driver, module, levers: module?.levers?.(driver) ?? null, availability: null });
    return this;
  }

  /**
   * Checks an instance spec against its level's module before anything is
   * queued; `STRATA_ERR_VALIDATION` naming the field. A level whose driver no
   * module owns checks nothing here (its driver still checks at create).
   */
  validate(level: LevelId, input: LevelInput): void {
    this.#byLevel.get(level)?.module?.validate(input);
  }

  /** The available driver that `module` owns, typed as that module's; null when there is none. */
  ownedDriver<D extends LevelDriver>(module: LevelModule<D>): D | null {
    const entry = this.#byLevel.get(module.id);
    return entry?.availability?.available && entry.module === (module as LevelModule) ? (entry.driver as D) : null;
  }

  /** The guard's levers on instances of `level`; null where its module has none (or no module owns its driver). */
  levers(level: LevelId): InstanceLevers | null {
    const entry = this.#byLevel.get(level);
    return entry?.availability?.available ? entry.levers : null;
  }

  /**
   * The guard's interceptors of every available level, each source made once
   * over all the drivers that share it (the vm and emu levels' one set).
   */
  interceptors(ctx: InterceptorContext): Interceptor[] {
    const bySource = new Map<InterceptorSource, LevelDriver[]>();
    for (const level of LEVEL_IDS) {
      const entry = this.#byLevel.get(level);
      const source = entry?.module?.interceptors;
      if (!entry?.availability?.available || !source) continue;
      bySource.set(source, [...(bySource.get(source) ?? []), entry.driver]);
    }
    return [...bySource].flatMap(([source, drivers]) => source.interceptors(drivers, ctx));
  }

  /**
   * Provisions every driver not provisioned yet, side by side (a KVM probe takes
   * seconds; the others need not wait). Never throws: a throwing provision makes
   * its driver unavailable with the error as the reason.
   */
  async provisionAll(): Promise<LevelDescription[]> {
    await Promise.all(
      [...this.#byLevel.values()]
        .filter((entry) => entry.availability === null)
        .map(async (entry) => {
          try {
            const { available, reason } = await entry.driver.provision();
            entry.availability = { available, reason };
          } catch (e) {
            entry.availability = { available: false, reason: `provision failed: ${messageOf(e)}` };
          }
        }),
    );
    return this.describe();
  }

  /** The available driver for `level`; STRATA_ERR_LEVEL_UNAVAILABLE otherwise. */
  forLevel(level: LevelId): LevelDriver {
    const entry = this.#byLevel.get(level);
    if (entry?.availability?.available) return entry.driver;
    const reason = this.#reasonOf(entry);
    throw new StrataError('STRATA_ERR_LEVEL_UNAVAILABLE', `level '${level}' is not available on this machine: ${reason}`, {
      level, reason, ...(entry ? { driver: entry.driver.id } : {}),
    });
  }

  /** Hands a tenant's quota to every available driver that enforces it; returns the failures. */
  async applyTenantQuota(tenantId: string, quota: Quota): Promise<Array<{ driver: string; error: string }>> {
    const failures: Array<{ driver: string; error: string }> = [];
    for (const d of this.availableDrivers()) {
      if (!d.setTenantQuota) continue;
      try {
        await d.setTenantQuota(tenantId, quota);
      } catch (e) {
        failures.push({ driver: d.id, error: messageOf(e) });
      }
    }
    return failures;
  }

  /**
   * Has every driver drop (or quarantine) what it holds for a deleted tenant;
   * unavailable ones too, since their files may still be on disk. Returns the failures.
   */
  async purgeTenant(tenantId: string, quarantine: { dir: string; prefix: string } | null): Promise<Array<{ driver: string; error: string }>> {
    const failures: Array<{ driver: string; error: string }> = [];
    for (const { driver } of this.#byLevel.values()) {
      try {
        await driver.purgeTenant?.(tenantId, quarantine);
      } catch (e) {
        failures.push({ driver: driver.id, error: messageOf(e) });
      }
    }
    return failures;
  }

  /** Drivers that provisioned successfully, in level order. */
  availableDrivers(): LevelDriver[] {
    return LEVEL_IDS.flatMap((level) => {
      const entry = this.#byLevel.get(level);
      return entry?.availability?.available ? [entry.driver] : [];
    });
  }

  /** All four levels, for `strata info`: which driver serves each, and why it can or cannot. */
  describe(): LevelDescription[] {
    return LEVEL_IDS.map((level) => {
      const entry = this.#byLevel.get(level);
      return {
        level,
        driver: entry?.driver.id ?? null,
        available: entry?.availability?.available ?? false,
        reason: this.#reasonOf(entry),
      };
    });
  }

  /**
   * Calls every driver's cleanup, provisioned or not (cleanup copes with a half-done
   * provision). One failing cleanup does not skip the others; failures are returned
   * for the caller to log.
   */
  async cleanupAll(): Promise<Array<{ driver: string; error: string }>> {
    const failures: Array<{ driver: string; error: string }> = [];
    await Promise.all(
      [...this.#byLevel.values()].map(async ({ driver }) => {
        try {
          await driver.cleanup();
        } catch (e) {
          failures.push({ driver: driver.id, error: messageOf(e) });
        }
      }),
    );
    return failures;
  }

  #reasonOf(entry: Entry | undefined): string {
    if (!entry) return 'no driver installed';
    return entry.availability?.reason ?? 'not provisioned yet';
  }
}
