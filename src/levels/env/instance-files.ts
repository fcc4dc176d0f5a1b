/**
 * What an env instance keeps on disk, under `<stateDir>/instances/<id>/`:
 *
 *   instance.json   the spec it was created with, and its port
 *   code.js         the handler module now deployed
 *   log.jsonl       its log (see instance-log.ts)
 *   snapshots/<snapshot id>/{code.js, kv.json, manifest.json}
 *
 * Files are written atomically (temp file, rename) and readable by root only:
 * isolate hosts never read them — the supervisor sends them the code.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { InstanceSpec } from '../driver.js';

export interface StoredInstance {
  spec: InstanceSpec;
  port: number;
}

/** Ids used as path components: letters, digits, '-', '_', '.', not starting with a dot. */
export const SAFE_ID = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;

export function writeAtomic(path: string, data: string | Buffer): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, data, { mode: 0o600 });
  renameSync(tmp, path);
}

export const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

export class InstanceFiles {
  constructor(readonly root: string) {}

  dir(id: string): string {
    return join(this.root, id);
  }

  create(stored: StoredInstance, code: string): void {
    mkdirSync(this.dir(stored.spec.id), { recursive: true, mode: 0o700 });
    writeAtomic(join(this.dir(stored.spec.id), 'code.js'), code);
    this.save(stored);
  }

  save(stored: StoredInstance): void {
    writeAtomic(join(this.dir(stored.spec.id), 'instance.json'), JSON.stringify(stored, null, 2));
  }

  readCode(id: string): string {
    return readFileSync(join(this.dir(id), 'code.js'), 'utf8');
  }

  writeCode(id: string, code: string): void {
    writeAtomic(join(this.dir(id), 'code.js'), code);
  }

  logPath(id: string): string {
    return join(this.dir(id), 'log.jsonl');
  }

  /** Every instance with a readable instance.json; broken leftovers are skipped. */
  all(): StoredInstance[] {
    let names: string[];
    try { names = readdirSync(this.root); } catch { return []; }
    return names.filter((n) => SAFE_ID.test(n)).flatMap((n) => {
      try { return [JSON.parse(readFileSync(join(this.root, n, 'instance.json'), 'utf8')) as StoredInstance]; } catch { return []; }
    });
  }

  remove(id: string): void {
    rmSync(this.dir(id), { recursive: true, force: true });
  }

  /** Writes a snapshot of code and KV pairs; returns its size and the digest of its manifest. */
  writeSnapshot(id: string, snapshotId: string, code: string, kv: Array<[string, string]>): { sizeBytes: number; digest: string } {
    const dir = join(this.dir(id), 'snapshots', snapshotId);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const kvText = JSON.stringify(kv);
    const manifest = JSON.stringify({ instance: id, snapshot: snapshotId, code: sha256(code), kv: sha256(kvText), createdAt: new Date().toISOString() });
    writeAtomic(join(dir, 'code.js'), code);
    writeAtomic(join(dir, 'kv.json'), kvText);
    writeAtomic(join(dir, 'manifest.json'), manifest);
    const sizeBytes = ['code.js', 'kv.json', 'manifest.json'].reduce((n, f) => n + statSync(join(dir, f)).size, 0);
    return { sizeBytes, digest: sha256(manifest) };
  }

  /** Reads a snapshot back, checking both files against its manifest; null when there is no such snapshot. */
  readSnapshot(id: string, snapshotId: string): { code: string; kv: Array<[string, string]> } | null {
    const dir = join(this.dir(id), 'snapshots', snapshotId);
    let manifest: { code: string; kv: string };
    try { manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { code: string; kv: string }; } catch { return null; }
    const code = readFileSync(join(dir, 'code.js'), 'utf8');
    const kvText = readFileSync(join(dir, 'kv.json'), 'utf8');
    if (sha256(code) !== manifest.code || sha256(kvText) !== manifest.kv) throw new Error(`snapshot ${snapshotId} does not match its manifest`);
    return { code, kv: JSON.parse(kvText) as Array<[string, string]> };
  }
}
