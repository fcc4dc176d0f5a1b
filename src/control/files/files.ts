/**
 * `strata cp`: tar archives into and out of a static site's docroot and an
 * instance's filesystem (when its level's driver has `copyIn`/`copyOut`).
 *
 * Everything a copy in could be refused for is decided before anything is
 * written: the archive's rules (`checkTenantArchive`), the path (no `..`, no
 * symlink on the way in a docroot), the disk — a docroot copy must fit in the
 * tenant's `diskMiB` beside what its instances and snapshots reserve and what
 * its docroots already hold; an instance copy in the instance's own disk (the
 * driver checks). So a refused copy leaves nothing behind.
 *
 * The write itself runs as an operation (`site.files` / `instance.files`):
 * the guard follows operations on the event bus and, as for a redeploy, stops
 * reporting on the tree when the write starts and baselines it again once it
 * is done — an authorised copy is the new known-good content, not a tamper.
 */
import { KeyedMutex } from '../../core/keyed-mutex.js';
import { StrataError } from '../../core/errors.js';
import { checkTenantArchive, readTar, writeTar, type CheckedArchive } from '../../core/tar.js';
import type { DriverRegistry } from '../../levels/registry.js';
import type { Store } from '../../store/store.js';
import type { Instance, Site, Tenant } from '../../store/types.js';
import type { CopyOptions, LevelDriver } from '../../levels/driver.js';
import type { OperationRunner } from '../lifecycle/operations.js';
import { tenantDocroot } from '../tenants/tenant-data.js';
import { MAX_COPY_BYTES, readFromTree, relativeParts, treeBytes, writeIntoTree, checkTreeFor } from './tree.js';

const MiB = 1024 * 1024;

export interface FileCopiesOptions {
  store: Store;
  registry: DriverRegistry;
  operations: OperationRunner;
  dataDir: string;
}

/** What a copy in did. */
export interface CopyInResult {
  path: string;
  entries: number;
  bytes: number;
  /** Members whose setuid/setgid bits were dropped. */
  stripped: string[];
}

/** A copy out: the archive and the name of its top member ('' when it holds a tree's contents). */
export interface CopyOut {
  name: string;
  archive: Buffer;
}

export class FileCopies {
  /** Copies into one tenant's docroots, one at a time: the path checks hold until the write is done. */
  readonly #docrootLocks = new KeyedMutex();

  constructor(private readonly o: FileCopiesOptions) {}

  /** A static site's docroot on disk; other sites have none. */
  docroot(tenant: Tenant, site: Site): string {
    if (site.target.kind !== 'static') {
      throw new StrataError('STRATA_ERR_UNSUPPORTED', `site '${site.hostname}' serves ${site.target.kind === 'instance' ? 'an instance' : 'a redirect'}, not a docroot: copy into the instance instead`, { operation: 'files' });
    }
    const parts = relativeParts(site.target.root);
    return [tenantDocroot(this.o.dataDir, tenant.id), ...parts].join('/');
  }

  async toSite(tenant: Tenant, site: Site, path: string, body: Buffer): Promise<CopyInResult> {
    const root = this.docroot(tenant, site);
    const dest = relativeParts(path);
    const checked = checkTenantArchive(body);
    return this.#docrootLocks.run(tenant.id, async () => {
      await checkTreeFor(root, dest, checked);
      const used = this.o.store.usage(tenant.id).diskMiB * MiB + (await treeBytes(tenantDocroot(this.o.dataDir, tenant.id)));
      const limit = tenant.quota.diskMiB * MiB;
      if (used + checked.bytes > limit) {
        throw new StrataError('STRATA_ERR_QUOTA_EXCEEDED', `quota exceeded: diskMiB: ${used} + ${checked.bytes} bytes > ${limit}`, {
          resource: 'diskMiB', limit: tenant.quota.diskMiB, used, requested: checked.bytes,
        });
      }
      await this.#run(tenant, 'site.files', `${tenant.name}/${site.hostname}`, () => writeIntoTree(root, dest, checked));
      return result(dest, checked);
    });
  }

  async fromSite(tenant: Tenant, site: Site, path: string): Promise<CopyOut> {
    const { name, entries } = await readFromTree(this.docroot(tenant, site), relativeParts(path));
    return { name, archive: writeTar(entries) };
  }

  async toInstance(tenant: Tenant, instance: Instance, path: string, body: Buffer, opts: Pick<CopyOptions, 'mark'> = {}): Promise<CopyInResult> {
    const driver = this.#copier(instance);
    const dest = relativeParts(path);
    const checked = checkTenantArchive(body);
    await this.#run(tenant, 'instance.files', `${tenant.name}/${instance.name}`, () =>
      driver.copyIn(instance.id, `/${dest.join('/')}`, writeTar(checked.entries), { bytes: checked.bytes, ...opts }));
    return result(dest, checked);
  }

  /** The instance's tar comes from inside it: read back under the same rules before it goes out (`..` refused), and rewritten. */
  async fromInstance(_tenant: Tenant, instance: Instance, path: string, opts: Pick<CopyOptions, 'mark'> = {}): Promise<CopyOut> {
    const driver = this.#copier(instance);
    const parts = relativeParts(path);
    const raw = await driver.copyOut(instance.id, `/${parts.join('/')}`, { bytes: 0, maxBytes: MAX_COPY_BYTES, ...opts });
    const entries = readTar(raw, 'archive from the instance').filter((e) => e.type !== 'other');
    return { name: parts.length === 0 ? '' : parts[parts.length - 1]!, archive: writeTar(entries) };
  }

  #copier(instance: Instance): LevelDriver & Required<Pick<LevelDriver, 'copyIn' | 'copyOut'>> {
    const driver = this.o.registry.forLevel(instance.level);
    if (!driver.copyIn || !driver.copyOut) {
      throw new StrataError('STRATA_ERR_UNSUPPORTED', `the ${instance.level} level cannot copy files into or out of its instances`, { level: instance.level, operation: 'files' });
    }
    return driver as LevelDriver & Required<Pick<LevelDriver, 'copyIn' | 'copyOut'>>;
  }

  /** The write as an operation (the guard's cue), awaited: a failure comes back as the error it was. */
  async #run(tenant: Tenant, kind: string, target: string, work: () => Promise<void>): Promise<void> {
    let failure: unknown;
    const op = this.o.operations.start({ tenantId: tenant.id, kind, target }, async () => {
      try {
        await work();
      } catch (err) {
        failure = err;
        throw err;
      }
    });
    const done = await this.o.operations.wait(op.id, 24 * 3600);
    if (done.status === 'failed') throw failure ?? new StrataError('STRATA_ERR_DRIVER', done.error?.message ?? 'the copy failed');
  }
}

const result = (dest: readonly string[], checked: CheckedArchive): CopyInResult =>
  ({ path: `/${dest.join('/')}`, entries: checked.entries.length, bytes: checked.bytes, stripped: checked.stripped });
