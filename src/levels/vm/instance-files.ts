/**
 * Where a VM lives on the host (`<stateDir>/instances/<id>/`, see driver.ts for
 * the layout), its record, its snapshots' manifests, and finding its QEMU.
 */
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError, notFound } from '../../core/errors.js';
import type { InstanceSpec } from '../driver.js';
import type { Accelerator } from './cmdline.js';
import { findQemus, isQemu } from './launch.js';
import type { VmAddress } from './network.js';
import type { VmConfig } from './options.js';
import type { SnapshotManifest } from './snapshot.js';

export interface InstanceRecord {
  spec: InstanceSpec;
  config: VmConfig;
  createdAt: string;
  /** Set by restore: the next start loads this snapshot instead of booting. */
  restoreFrom: string | null;
  /** Set by a clone from a memory snapshot: the next start makes the resumed guest take this instance's identity. */
  reidentify?: boolean;
  /** The VM's tap and address on its tenant's bridge, kept for its life. */
  network: VmAddress;
  /**
   * A change made while the VM runs (`reconfigure.ts`): the spec and config of
   * its next start. Until then `spec` and `config` stay what runs (its snapshots'
   * machine, the guest port the gateway reaches).
   */
  next?: { spec: InstanceSpec; config: VmConfig };
  /** Facts of the current or last launch. */
  launch: { accelerator: Accelerator; startedAt: string; restoredFrom: string | null } | null;
}

export const SAFE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export function checkId(id: string): void {
  if (!SAFE_ID.test(id)) throw new StrataError('STRATA_ERR_VALIDATION', `bad id '${id}': letters, digits, '.', '_', '-'; at most 64`, { id });
}

export class VmFiles {
  constructor(readonly stateDir: string) {}

  instancesDir(): string { return join(this.stateDir, 'instances'); }
  dir(id: string): string { return join(this.instancesDir(), id); }
  runDir(id: string): string { return join(this.dir(id), 'run'); }
  qmpPath(id: string): string { return join(this.runDir(id), 'qmp.sock'); }
  pidPath(id: string): string { return join(this.runDir(id), 'qemu.pid'); }
  /** Written by the daemon, so outside run/ (the VM user's: a link planted there must not steer the daemon's writes). */
  consolePath(id: string): string { return join(this.dir(id), 'console.log'); }
  consoleSocketPath(id: string): string { return join(this.runDir(id), 'console.sock'); }
  diskPath(id: string): string { return join(this.dir(id), 'disk.qcow2'); }
  snapshotDir(id: string, snapshotId: string): string { return join(this.dir(id), 'snapshots', snapshotId); }

  async load(id: string): Promise<InstanceRecord | null> {
    const text = await readFile(join(this.dir(id), 'instance.json'), 'utf8').catch(() => null);
    return text === null ? null : (JSON.parse(text) as InstanceRecord);
  }

  async require(id: string): Promise<InstanceRecord> {
    const rec = await this.load(id);
    if (!rec) throw notFound('instance', id);
    return rec;
  }

  async save(rec: InstanceRecord): Promise<void> {
    const file = join(this.dir(rec.spec.id), 'instance.json');
    await writeFile(`${file}.tmp`, `${JSON.stringify(rec, null, 2)}\n`, { mode: 0o600 });
    await rename(`${file}.tmp`, file);
  }

  async manifest(id: string, snapshotId: string): Promise<SnapshotManifest> {
    const text = await readFile(join(this.snapshotDir(id, snapshotId), 'manifest.json'), 'utf8').catch(() => null);
    if (text === null) throw notFound('snapshot', snapshotId);
    return JSON.parse(text) as SnapshotManifest;
  }

  /** The live QEMU of `id`: from its pidfile, else (pidfile gone) from /proc. */
  async pid(id: string): Promise<number | null> {
    const marker = this.qmpPath(id);
    const fromFile = Number((await readFile(this.pidPath(id), 'utf8').catch(() => '')).trim());
    if (fromFile > 0 && (await isQemu(fromFile, marker))) return fromFile;
    const found = await findQemus(marker);
    return found[0]?.pid ?? null;
  }

  /** Which instance a QEMU command line belongs to (by its QMP socket's path), or null for another's QEMU. */
  idFromCmdline(cmdline: string[]): string | null {
    const qmp = cmdline[cmdline.indexOf('-qmp') + 1] ?? '';
    const prefix = `unix:${this.instancesDir()}/`;
    return qmp.startsWith(prefix) ? qmp.slice(prefix.length).split('/')[0] ?? null : null;
  }

  async clearRunFiles(id: string): Promise<void> {
    for (const f of ['qmp.sock', 'qemu.pid', 'migrate.sock', 'console.sock']) await rm(join(this.runDir(id), f), { force: true });
  }
}
