/**
 * A new spec for an os instance that exists: the limits go to the running
 * container's own cgroup at once (CFS quota, memory limit), and everything goes
 * into its bundle and record, which its next start runs from. The config
 * (command, environment, port, user) only reaches a container through its OCI
 * spec at `runc create`: it waits for the next start.
 *
 * A memory limit below what the container uses now is not written (the kernel
 * would reclaim, then OOM-kill the tenant's own processes for a change it
 * asked of the control plane): it waits for the next start. A CPU cap held
 * below the declared one (the guard's throttle) is left to its holder, whose
 * undo restores the declared — the new — value.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CPU_PERIOD_US } from '../../core/cgroups.js';
import { conflict } from '../../core/errors.js';
import { validationError } from '../../core/validation.js';
import type { Applied, InstanceSpec } from '../driver.js';
import type { Allocations } from './allocations.js';
import type { Cgroups } from './cgroups.js';
import { resolveImageUser } from './image-user.js';
import type { ImageStore } from './images.js';
import { parseOsInput } from './instance-config.js';
import type { InstanceFiles, InstanceRecord } from './instance-files.js';
import type { OsDriverConfig } from './options.js';
import { planInstance } from './plan.js';
import type { Runtime } from './runtime.js';
import type { OciSpec } from './spec.js';
import { writeJsonAtomic } from './state-file.js';
import { validateSpec } from './validate.js';

const MIB = 1024 * 1024;

export interface ReconfigureDeps {
  files: InstanceFiles;
  runtime: Runtime;
  cgroups: Cgroups;
  allocations: Allocations;
  images: ImageStore;
  config: OsDriverConfig;
}

/** Runs under the driver's per-instance lock. */
export async function reconfigureInstance(d: ReconfigureDeps, spec: InstanceSpec, changed: readonly string[]): Promise<Record<string, Applied>> {
  const record = await d.files.record(spec.id);
  const config = parseOsInput(spec);
  if (JSON.stringify(config.volumeMiB) !== JSON.stringify(record.config.volumeMiB)) {
    throw validationError('config.volumeMiB', 'the data volume keeps the size it was made with');
  }
  const tenant = await d.allocations.tenant(spec.tenantId);
  // cgroup v1 refuses a child CPU quota above its parent's (as at create).
  const cap = (vcpus: number): number => Math.min(vcpus, tenant.limits?.vcpus ?? Infinity);
  const bundle = join(d.files.dir(spec.id), 'bundle', 'config.json');
  let next: { record: InstanceRecord; oci: OciSpec };
  if (changed.some((f) => f.startsWith('config.'))) {
    const image = await d.images.resolve(spec.source!);
    // The instance runs on its tenant's copy of the image it was made from; a config planned from another would not fit it.
    if (image.manifest.digest !== record.imageDigest) {
      throw conflict(`image '${record.image}' changed since the instance was made: its config cannot be planned again; launch a new instance`, { image: record.image });
    }
    const userSpec = config.user ?? image.manifest.config.user;
    const user = userSpec ? await resolveImageUser(userSpec, record.lower) : undefined;
    const plan = planInstance({
      spec, config, image, tenant, address: record.address, lower: record.lower, user, driver: d.config,
      hostVeth: record.hostVeth, cgroupMode: d.cgroups.mode, ioWeight: d.cgroups.hasIoWeight(),
      rootPath: d.files.rootfsDir(spec.id), volumeDir: d.files.volumeDir(spec.id),
    });
    next = { record: { ...plan.record, createdAt: record.createdAt }, oci: plan.oci };
  } else {
    const oci = JSON.parse(await readFile(bundle, 'utf8')) as OciSpec;
    const bytes = spec.limits.memoryMiB * MIB;
    const r = oci.linux.resources;
    oci.linux.resources = {
      ...r,
      cpu: { ...r.cpu, quota: Math.round(cap(spec.limits.vcpus) * CPU_PERIOD_US), period: r.cpu?.period ?? CPU_PERIOD_US },
      memory: { ...r.memory, limit: bytes, swap: bytes },
    };
    next = { record: { ...record, spec }, oci };
  }
  validateSpec(next.oci, { allowedBindSources: [d.files.volumeDir(spec.id)] });
  await writeFile(bundle, `${JSON.stringify(next.oci, null, 2)}\n`, { mode: 0o600 });
  await writeJsonAtomic(join(d.files.dir(spec.id), 'instance.json'), next.record);

  const status = (await d.runtime.state(spec.id))?.status;
  const live = status === 'running' || status === 'paused';
  const applied: Record<string, Applied> = {};
  for (const field of changed) {
    applied[field] = live && field.startsWith('limits.') ? await applyLive(d.cgroups, record, spec, field, cap) : 'next-restart';
  }
  return applied;
}

/** One limit on the running container's cgroup; `next-restart` where it is not written (see the file's comment). */
async function applyLive(cgroups: Cgroups, record: InstanceRecord, spec: InstanceSpec, field: string, cap: (v: number) => number): Promise<Applied> {
  const path = record.cgroupsPath;
  try {
    if (field === 'limits.vcpus') {
      const now = await cgroups.cpuLimit(path);
      if (now !== null && now < cap(record.spec.limits.vcpus) - 0.001) return 'next-restart';
      await cgroups.setCpuLimit(path, cap(spec.limits.vcpus));
      return 'live';
    }
    if (field === 'limits.memoryMiB') {
      const used = (await cgroups.stats(path)).memoryBytes;
      if (used !== null && used > spec.limits.memoryMiB * MIB) return 'next-restart';
      await cgroups.setMemoryLimit(path, spec.limits.memoryMiB);
      return 'live';
    }
    // diskMiB bounds the data volume's size, checked at validation: nothing on the host holds the old value.
    return 'live';
  } catch {
    // The cgroup went away (the container stopped meanwhile) or the kernel refused: the bundle has it for the next start.
    return 'next-restart';
  }
}
