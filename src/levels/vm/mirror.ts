/**
 * A move's disk: the sender mirrors its overlay's own clusters (`sync: top`:
 * both overlays sit on the same shared base) into the receiver's NBD export
 * while the guest runs, keeps the mirror in step during the memory migration,
 * and, once the guest is paused at the end of it, completes the mirror without
 * switching to it (`block-job-cancel` of a ready mirror copies what is left).
 * QEMU's old block migration (`migrate blk`) cannot name `-blockdev` disks.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../../core/errors.js';
import type { QmpClient } from './qmp.js';

const JOB = 'move-disk';

interface BlockJob {
  device: string;
  ready: boolean;
  status?: string;
}

/** Starts mirroring `disk0` into the NBD export at `nbdSocket` and waits until it has caught up. */
export async function mirrorDiskTo(qmp: QmpClient, nbdSocket: string, timeoutMs: number): Promise<void> {
  await qmp.execute('blockdev-add', { driver: 'nbd', 'node-name': 'move-target', server: { type: 'unix', path: nbdSocket }, export: 'disk0' });
  await qmp.execute('blockdev-mirror', { 'job-id': JOB, device: 'disk0', target: 'move-target', sync: 'top' });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const job = (await qmp.execute<BlockJob[]>('query-block-jobs')).find((j) => j.device === JOB);
    if (!job) throw new StrataError('STRATA_ERR_DRIVER', 'the disk mirror of the move ended early');
    if (job.ready) return;
    if (Date.now() > deadline) throw new StrataError('STRATA_ERR_DRIVER', `the disk mirror did not catch up in ${timeoutMs} ms`);
    await sleep(20);
  }
}

/** With the guest paused: lets the mirror copy what is left and end, leaving the receiver's disk complete. */
export async function finishMirror(qmp: QmpClient, timeoutMs: number): Promise<void> {
  await qmp.execute('block-job-cancel', { device: JOB });
  const deadline = Date.now() + timeoutMs;
  while ((await qmp.execute<BlockJob[]>('query-block-jobs')).some((j) => j.device === JOB)) {
    if (Date.now() > deadline) throw new StrataError('STRATA_ERR_DRIVER', `the disk mirror did not finish in ${timeoutMs} ms`);
    await sleep(10);
  }
}
