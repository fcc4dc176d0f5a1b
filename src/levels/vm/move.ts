/**
 * Moving a running VM between two drivers on this machine (two Strata daemons):
 * QEMU's live migration over a Unix socket, with the disk mirrored first into
 * the receiver's NBD export (`mirror.ts`). The driver's `moveIn`/`moveOut` call
 * these under the instance's lock.
 */
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { QueryStatus } from './connections.js';
import { finishMirror, mirrorDiskTo } from './mirror.js';
import type { QmpClient } from './qmp.js';
import { awaitMigration } from './snapshot.js';

/**
 * Receiving side, in a QEMU started with `-incoming defer`: listens for the
 * migration stream on `incoming.sock` in `runDir`, exports the disk over NBD
 * beside it when there is one, and calls `send(socket)`, which returns once the
 * sender has migrated into it.
 */
export async function receiveMove(qmp: QmpClient, runDir: string, disk: boolean, send: (socket: string) => Promise<void>): Promise<void> {
  const socket = join(runDir, 'incoming.sock');
  await qmp.execute('migrate-incoming', { uri: `unix:${socket}` });
  if (disk) {
    await qmp.execute('nbd-server-start', { addr: { type: 'unix', data: { path: join(runDir, 'nbd.sock') } } }); // SocketAddressLegacy
    await qmp.execute('block-export-add', { type: 'nbd', id: 'disk0', 'node-name': 'disk0', writable: true });
  }
  await send(socket);
  if (disk) await qmp.execute('nbd-server-stop');
}

/**
 * Sending side: memory while the guest runs on, then a short pause for the rest
 * and the device state; a disk first, by a mirror into the receiver's NBD export.
 * With the state across and this side paused, `confirm()` (when given) must
 * resolve once the receiver runs the guest. Any failure undoes the move on this
 * side: the guest runs on here.
 */
export async function sendMove(qmp: QmpClient, socket: string, disk: boolean, timeoutMs: number, confirm?: () => Promise<void>): Promise<void> {
  try {
    if (disk) await mirrorDiskTo(qmp, join(dirname(socket), 'nbd.sock'), timeoutMs * 4);
    await qmp.execute('migrate-set-parameters', { 'max-bandwidth': 1024 * 1024 * 1024, 'downtime-limit': 100 });
    await qmp.execute('migrate', { uri: `unix:${socket}` });
    await awaitMigration(qmp, timeoutMs * 4);
    // Paused now: the mirror's last writes go across, then the receiver may run.
    if (disk) await finishMirror(qmp, timeoutMs);
    await confirm?.();
  } catch (e) {
    await undoMoveOut(qmp).catch(() => undefined);
    throw e;
  }
}

/** A failed move, on the sending side: no migration or mirror left, the guest running again (QEMU reactivates its disk on `cont`). */
async function undoMoveOut(qmp: QmpClient): Promise<void> {
  await qmp.execute('migrate_cancel').catch(() => undefined);
  for (let i = 0; i < 250; i++) {
    const m = await qmp.execute<{ status?: string }>('query-migrate').catch(() => ({ status: undefined }));
    if (m.status !== 'active' && m.status !== 'cancelling' && m.status !== 'device' && m.status !== 'pre-switchover') break;
    await sleep(20);
  }
  const jobs = await qmp.execute<Array<{ device: string }>>('query-block-jobs').catch(() => []);
  if (jobs.some((j) => j.device === 'move-disk')) await qmp.execute('block-job-cancel', { device: 'move-disk', force: true }).catch(() => undefined);
  for (let i = 0; i < 50; i++) {
    const left = await qmp.execute<Array<{ device: string }>>('query-block-jobs').catch(() => []);
    if (!left.some((j) => j.device === 'move-disk')) break;
    await sleep(20);
  }
  await qmp.execute('blockdev-del', { 'node-name': 'move-target' }).catch(() => undefined);
  const { running } = await qmp.execute<QueryStatus>('query-status');
  if (!running) await qmp.execute('cont');
}
