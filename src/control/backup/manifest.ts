/**
 * A backup's manifest: every directory, file and symlink of the backup with its
 * mode, and each file's size and sha256. The restore trusts nothing in a backup
 * directory that the manifest does not name with a matching hash.
 *
 * The manifest catches corruption and a file changed on its own; it is not
 * signed (the backup holds every key the daemon has, so whoever can rewrite the
 * backup can rewrite a signature too): keep backups where only the provider writes.
 */
import { lstatSync, readdirSync, readlinkSync } from 'node:fs';
import { isAbsolute, join, normalize, sep } from 'node:path';
import { z } from 'zod';
import { sha256File } from '../../core/hash.js';

export const BACKUP_FORMAT = 'strata-backup/1';

/** A path inside the backup: relative, normalised, nothing that climbs out. */
const RelPath = z.string().min(1).max(4096).refine(
  (p) => !isAbsolute(p) && normalize(p) === p && !p.split(sep).includes('..') && !p.includes('\0'),
  'a relative path inside the backup, without ..',
);
const Mode = z.number().int().min(0).max(0o7777);

export const ManifestEntrySchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('dir'), path: RelPath, mode: Mode }).strict(),
  z.object({ type: z.literal('file'), path: RelPath, mode: Mode, size: z.number().int().min(0), sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
  z.object({ type: z.literal('symlink'), path: RelPath, target: z.string().min(1).max(4096) }).strict(),
]);
export type ManifestEntry = z.infer<typeof ManifestEntrySchema>;

export const ManifestSchema = z.object({
  format: z.literal(BACKUP_FORMAT),
  strataVersion: z.string(),
  /** When the store's snapshot was taken: the backup holds every write acknowledged before it. */
  consistentAt: z.string(),
  createdAt: z.string(),
  /** The data dir it was taken from (for the operator's records only). */
  source: z.string(),
  store: z.object({ file: z.string(), schemaVersion: z.number().int() }).strict(),
  /** The audit log in the copy, as it verified when the backup was taken. */
  audit: z.object({ size: z.number().int(), signedSize: z.number().int(), heads: z.number().int() }).strict(),
  entries: z.array(ManifestEntrySchema),
  /** What the data dir held that a backup leaves out, and why. */
  skipped: z.array(z.object({ path: z.string(), why: z.string() }).strict()),
}).strict();
export type Manifest = z.infer<typeof ManifestSchema>;

/**
 * What a directory holds, as manifest entries (paths relative to `root`),
 * parents before children, sorted; files hashed. Sockets, FIFOs and devices
 * are not state and are left out. `skip`: the manifest itself.
 */
export async function describeTree(root: string, skip: ReadonlySet<string> = new Set()): Promise<ManifestEntry[]> {
  const out: ManifestEntry[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const path = rel ? join(rel, name) : name;
      if (skip.has(path)) continue;
      const full = join(root, path);
      const st = lstatSync(full);
      const mode = st.mode & 0o7777;
      if (st.isDirectory()) {
        out.push({ type: 'dir', path, mode });
        await walk(path);
      } else if (st.isFile()) {
        out.push({ type: 'file', path, mode, size: st.size, sha256: await sha256File(full) });
      } else if (st.isSymbolicLink()) {
        out.push({ type: 'symlink', path, target: readlinkSync(full) });
      }
    }
  };
  await walk('');
  return out;
}
