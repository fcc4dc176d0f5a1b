/**
 * Taking a snapshot of an os instance: its writable layer and its volume, with
 * the container frozen (runc pause) for the copy when it runs, and the volume
 * mounted for it when the instance is stopped.
 */
import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { SnapshotResult } from '../driver.js';
import type { InstanceFiles } from './instance-files.js';
import { mountPoints, mountVolume, unmount } from './rootfs.js';
import type { Runtime } from './runtime.js';
import type { SnapshotStore } from './snapshots.js';

/** Unmounts `mountPoint` and removes the (then empty) directory. */
export async function unmountDir(mountPoint: string): Promise<void> {
  await unmount(mountPoint);
  await rmdir(mountPoint).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== 'ENOENT') throw e;
  });
}

export async function captureInstance(
  d: { files: InstanceFiles; runtime: Runtime; snapshots: SnapshotStore }, id: string, snapshotId: string,
): Promise<SnapshotResult> {
  const record = await d.files.record(id);
  const dir = d.files.dir(id);
  const container = await d.runtime.state(id);
  const live = container !== null && (container.status === 'running' || container.status === 'paused');
  const hasVolume = record.config.volumeMiB !== undefined;
  let mountedHere = false;
  let frozen = false;
  try {
    if (hasVolume && !(await mountPoints()).has(d.files.volumeDir(id))) {
      await mountVolume(join(dir, 'volume.ext4'), d.files.volumeDir(id));
      mountedHere = true;
    }
    if (live && container.status === 'running') {
      await d.runtime.pause(id);
      frozen = true;
    }
    const taken = await d.snapshots.capture(record.spec.tenantId, snapshotId, id, { name: record.image, digest: record.imageDigest }, {
      upper: join(dir, 'upper'), volume: hasVolume ? d.files.volumeDir(id) : null, hostId: record.hostId,
    });
    return { sizeBytes: taken.sizeBytes, digest: taken.digest };
  } finally {
    if (frozen) await d.runtime.resume(id);
    if (mountedHere) await unmountDir(d.files.volumeDir(id));
  }
}
