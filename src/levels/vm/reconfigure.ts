/**
 * A new spec for a VM that exists. QEMU takes its vCPUs and memory on its
 * command line and the guest its command and port on the kernel's: with no
 * memory balloon in these machines, every change waits for the next start.
 * While the VM runs, its record stays what runs — its snapshots are of that
 * machine, the gateway reaches that guest port — and the change waits beside
 * it (`next`), which the next start takes. The disk keeps the size it was made
 * with and the guest its architecture; a staged restore loads a machine of the
 * snapshot's shape, so its vCPUs and memory cannot change until that start.
 */
import { conflict } from '../../core/errors.js';
import { validationError } from '../../core/validation.js';
import type { Applied, InstanceLimits, InstanceSpec } from '../driver.js';
import type { GuestArch } from './cmdline.js';
import type { VmFiles } from './instance-files.js';
import { parseQemuInput } from './options.js';

/** What a VM's machine can be given: whole vCPUs 1..16, 64 MiB..64 GiB of memory. */
export function checkVmLimits(limits: InstanceLimits): void {
  const { vcpus, memoryMiB } = limits;
  if (!Number.isInteger(vcpus) || vcpus < 1 || vcpus > 16) throw validationError('limits.vcpus', 'a VM has whole vCPUs, 1..16');
  if (!Number.isInteger(memoryMiB) || memoryMiB < 64 || memoryMiB > 65536) throw validationError('limits.memoryMiB', 'a VM has 64..65536 MiB');
}

/** Runs under the driver's per-instance lock. */
export async function reconfigureVm(files: VmFiles, level: string, arches: GuestArch[], spec: InstanceSpec, changed: readonly string[]): Promise<Record<string, Applied>> {
  const { next: pending, ...rec } = await files.require(spec.id);
  const base = pending ?? rec;
  const config = parseQemuInput(spec.config, level, arches);
  checkVmLimits(spec.limits);
  if (config.arch !== base.config.arch) throw validationError('config.arch', `the guest stays ${base.config.arch}: its disk and snapshots are of that architecture`);
  if (spec.limits.diskMiB !== base.spec.limits.diskMiB) throw validationError('limits.diskMiB', 'the disk keeps the size it was made with');
  const machine = spec.limits.vcpus !== base.spec.limits.vcpus || spec.limits.memoryMiB !== base.spec.limits.memoryMiB;
  if (machine && rec.restoreFrom) {
    throw conflict('a restored snapshot is waiting for the next start, which needs the machine it was taken of: start the instance first', { restoreFrom: rec.restoreFrom });
  }
  const running = (await files.pid(spec.id)) !== null;
  await files.save(running ? { ...rec, next: { spec, config } } : { ...rec, spec, config });
  return Object.fromEntries(changed.map((f) => [f, 'next-restart' as const]));
}
