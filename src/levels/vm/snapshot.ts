/**
 * Snapshots of a running VM: device state and memory through QEMU's migration
 * stream, saved to a file. QEMU cannot write the file itself here — `file:`
 * URIs arrive in QEMU 8.2 and `exec:` needs a fork that `-sandbox spawn=deny`
 * forbids — so the daemon listens on a Unix socket in the VM's run directory,
 * QEMU migrates into it (`migrate unix:…`), and the daemon writes what arrives.
 * Restore hands the file to a new QEMU as an inherited descriptor
 * (`-incoming fd:3`), which reads it at full speed.
 *
 * The guest is paused (QMP `stop`, which also drains and flushes its disk) for
 * the whole migration and the copy of its qcow2 overlay, so memory, devices and
 * disk are one consistent point in time; it runs on afterwards if it ran.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chown, rm } from 'node:fs/promises';
import { createServer, type Socket } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../../core/errors.js';
import type { QmpClient } from './qmp.js';
import type { VmUser } from './launch.js';

export interface SnapshotManifest {
  version: 1;
  instanceId: string;
  snapshotId: string;
  arch: string;
  machine: { vcpus: number; memoryMiB: number };
  /** Null for a snapshot of a stopped VM: there is no memory to keep, restore boots afresh. */
  memory: { file: string; sizeBytes: number; sha256: string } | null;
  /** The instance's qcow2 overlay as it was at that point (null: the instance has no disk). Absent in older manifests. */
  disk?: { file: string; sizeBytes: number; sha256: string } | null;
  createdAt: string;
}

interface MigrationInfo {
  status?: string;
  'error-desc'?: string;
}

/** Streams the VM's state into `file` through a Unix socket at `socketPath`; the VM must already be stopped. */
export async function migrateToFile(qmp: QmpClient, socketPath: string, file: string, user: VmUser, timeoutMs = 120_000): Promise<void> {
  await rm(socketPath, { force: true });
  let received: Promise<void> | null = null;
  const server = createServer({ allowHalfOpen: false }, (socket: Socket) => {
    received ??= pipeline(socket, createWriteStream(file, { mode: 0o600 }));
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socketPath, resolve));
  try {
    await chown(socketPath, user.uid, user.gid);
    // Default bandwidth caps at 32 MiB/s; the guest is paused, so take the disk's speed.
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 64 * 1024 * 1024 * 1024 });
    await qmp.execute('migrate', { uri: `unix:${socketPath}` });
    await awaitMigration(qmp, timeoutMs);
    if (!received) throw new StrataError('STRATA_ERR_DRIVER', 'migration completed but no stream arrived');
    await received;
  } finally {
    server.close();
    await rm(socketPath, { force: true });
  }
}

/** The content address of a manifest: sha256 of its canonical JSON. */
export const manifestDigest = (m: SnapshotManifest): string => createHash('sha256').update(JSON.stringify(m)).digest('hex');

/** Waits for the outgoing migration to complete; cancels it and throws when it fails or takes longer than `timeoutMs`. */
export async function awaitMigration(qmp: QmpClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const info = await qmp.execute<MigrationInfo>('query-migrate');
    if (info.status === 'completed') return;
    if (info.status === 'failed' || info.status === 'cancelled') {
      throw new StrataError('STRATA_ERR_DRIVER', `migration ${info.status}: ${info['error-desc'] ?? 'no reason given'}`);
    }
    if (Date.now() > deadline) {
      await qmp.execute('migrate_cancel').catch(() => undefined);
      throw new StrataError('STRATA_ERR_DRIVER', `migration did not finish in ${timeoutMs} ms`);
    }
    await sleep(10);
  }
}
