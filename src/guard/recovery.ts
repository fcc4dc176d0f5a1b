/**
 * Known-good copies: a content-addressed store (`<dir>/<sha256[0:2]>/<sha256>`)
 * of the files of trees whose recovery is a file copy — static docroots — and
 * the restore that puts a tree back the way its baseline says it was.
 *
 * Each object is copied, then hashed again, and kept only when it matches the
 * hash the baseline recorded: a file changed between the baseline and the copy
 * is never taken for known-good. Identical files across sites and baselines are
 * stored once. A restore writes each file beside its target and renames it over
 * (a visitor gets the old or the new file, never half of one) and removes files
 * the baseline does not have.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { VerifyReport } from './checksums.js';

export interface KeepReport {
  /** Objects written now (the rest were already there). */
  stored: number;
  /** Files that changed before they could be copied: not known-good. */
  skipped: string[];
}

export interface RestoreReport {
  restored: string[];
  removed: string[];
  /** Files the store had no good copy of. */
  missing: string[];
}

export class KnownGoodStore {
  constructor(readonly dir: string) {}

  objectPath(hash: string): string {
    if (!/^[0-9a-f]{64}$/.test(hash)) throw new RangeError(`'${hash}' is not a sha256`);
    return join(this.dir, hash.slice(0, 2), hash);
  }

  async has(hash: string): Promise<boolean> {
    return stat(this.objectPath(hash)).then((s) => s.isFile(), () => false);
  }

  /** Copies each `root/path` whose content still hashes to `hash` into the store. */
  async keep(root: string, files: readonly { path: string; hash: string }[]): Promise<KeepReport> {
    const report: KeepReport = { stored: 0, skipped: [] };
    for (const f of files) {
      if (await this.has(f.hash)) continue;
      const object = this.objectPath(f.hash);
      await mkdir(dirname(object), { recursive: true, mode: 0o700 });
      const tmp = `${object}.tmp-${randomUUID().slice(0, 8)}`;
      try {
        await copyFile(join(root, f.path), tmp);
        if ((await sha256File(tmp)) !== f.hash) { report.skipped.push(f.path); await rm(tmp, { force: true }); continue; }
        await rename(tmp, object);
        report.stored++;
      } catch {
        report.skipped.push(f.path);
        await rm(tmp, { force: true });
      }
    }
    return report;
  }

  /**
   * Undoes what `report` found under `root`: changed and removed files come
   * back from their known-good copies, added ones go. `expected` maps each
   * baselined path to its hash.
   */
  async restore(root: string, report: Pick<VerifyReport, 'added' | 'removed' | 'changed'>, expected: ReadonlyMap<string, string>): Promise<RestoreReport> {
    const out: RestoreReport = { restored: [], removed: [], missing: [] };
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    for (const path of [...report.changed.map((c) => c.path), ...report.removed]) {
      const hash = expected.get(path);
      if (!hash || !(await this.has(hash))) { out.missing.push(path); continue; }
      const target = join(root, path);
      await mkdir(dirname(target), { recursive: true });
      // Staged in the store, not beside the target: a temporary name in the watched tree would itself look like tampering.
      const tmp = join(this.dir, `restore-${randomUUID().slice(0, 8)}`);
      await copyFile(this.objectPath(hash), tmp);
      await rename(tmp, target).catch(async (e: NodeJS.ErrnoException) => {
        await rm(tmp, { force: true });
        if (e.code !== 'EXDEV') throw e;
        await copyFile(this.objectPath(hash), target); // another filesystem: not atomic, still whole once done
      });
      out.restored.push(path);
    }
    for (const path of report.added) {
      await rm(join(root, path), { force: true });
      out.removed.push(path);
    }
    return out;
  }
}

export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (c) => h.update(c)).on('error', reject).on('end', () => resolve(h.digest('hex')));
  });
}
