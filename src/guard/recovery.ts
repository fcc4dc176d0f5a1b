/**
 * Known-good copies: a content-addressed store (`<dir>/<sha256[0:2]>/<sha256>`)
 * of the files of trees whose recovery is a file copy — static docroots — and
 * the restore that puts a tree back the way its baseline says it was.
 *
 * Each object is copied, then hashed again, and kept only when it matches the
 * hash the baseline recorded: a file changed between the baseline and the copy
 * is never taken for known-good. Identical files across sites and baselines are
 * stored once. A restore puts back what the baseline says, by inode: it first
 * removes every entry the baseline does not have (files, directories with all
 * they hold, FIFOs, sockets, devices, and whatever took a baselined name with
 * another type), deepest first; then directories get their mode and owner back
 * (missing ones made), shallowest first; then each changed file is staged in
 * the store with its mode and owner and renamed over its name — a fresh inode,
 * so a hard link made from outside no longer reaches it, and a visitor gets the
 * old or the new file, never half of one; symlinks are swapped back the same way.
 */
import { randomUUID } from 'node:crypto';
import { chmod, copyFile, lchown, lstat, mkdir, rename, rm, stat, symlink } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { sha256File } from '../core/hash.js';
import type { BaselineEntry, VerifyReport } from './checksums.js';

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

/** Paths whose inode a restore changed, with their parent directories: what the baseline must take again. */
export type RestoreResult = RestoreReport & { touched: string[] };

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
   * Undoes what `report` found under `root`: entries the baseline lacks go,
   * changed and removed ones come back — files from their known-good copies,
   * directories and symlinks from the baseline — with their mode and owner.
   * `expected` maps each baselined path to its entry.
   */
  async restore(root: string, report: Pick<VerifyReport, 'added' | 'removed' | 'changed'>, expected: ReadonlyMap<string, BaselineEntry>): Promise<RestoreResult> {
    const out: RestoreResult = { restored: [], removed: [], missing: [], touched: [] };
    const touched = new Set<string>();
    const touch = (path: string): void => { touched.add(path); if (path !== '') touched.add(parentOf(path)); };
    const abs = (path: string): string => (path === '' ? root : join(root, path));
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    const wrongType = report.changed.filter((c) => c.changes.includes('type')).map((c) => c.path);
    for (const path of [...report.added, ...wrongType].sort(deepestFirst)) {
      await rm(abs(path), { recursive: true, force: true });
      touch(path);
      if (report.added.includes(path)) out.removed.push(path);
    }
    const back = [...report.changed.map((c) => c.path), ...report.removed].map((p) => expected.get(p)).filter((e): e is BaselineEntry => e !== undefined);
    for (const dir of back.filter((e) => e.kind === 'dir').sort((a, b) => -deepestFirst(a.path, b.path))) {
      await mkdir(abs(dir.path), { recursive: true, mode: dir.mode & 0o7777 });
      await setOwnerAndMode(abs(dir.path), dir);
      touch(dir.path);
      out.restored.push(dir.path);
    }
    for (const entry of back.filter((e) => e.kind !== 'dir')) {
      if (entry.kind === 'file' && !(await this.has(entry.hash))) { out.missing.push(entry.path); continue; }
      const target = abs(entry.path);
      await mkdir(dirname(target), { recursive: true });
      // Staged in the store, not beside the target: a temporary name in the watched tree would itself look like tampering.
      const tmp = join(this.dir, `restore-${randomUUID().slice(0, 8)}`);
      const stage = async (at: string): Promise<void> => {
        if (entry.kind === 'symlink') await symlink(entry.hash, at);
        else await copyFile(this.objectPath(entry.hash), at);
        await setOwnerAndMode(at, entry);
      };
      await stage(tmp);
      await rename(tmp, target).catch(async (e: NodeJS.ErrnoException) => {
        await rm(tmp, { force: true });
        if (e.code !== 'EXDEV') throw e;
        // Another filesystem: not atomic, still whole once done.
        await rm(target, { force: true });
        await stage(target);
      });
      touch(entry.path);
      out.restored.push(entry.path);
    }
    out.touched = [...touched];
    return out;
  }
}

/** Owner first: chown clears the setuid and setgid bits, which chmod then sets as they were. A symlink has no mode of its own. */
async function setOwnerAndMode(path: string, entry: BaselineEntry): Promise<void> {
  await lchown(path, entry.uid, entry.gid);
  if (entry.kind !== 'symlink' && ((await lstat(path)).mode & 0o7777) !== (entry.mode & 0o7777)) await chmod(path, entry.mode & 0o7777);
}

const parentOf = (path: string): string => (path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '');
const depth = (path: string): number => (path === '' ? 0 : path.split('/').length);
const deepestFirst = (a: string, b: string): number => depth(b) - depth(a) || (a < b ? -1 : a > b ? 1 : 0);

