/**
 * A new spec for an os instance that exists: the limits go to the running
 * container's own cgroup at once (CFS quota, memory limit), and everything goes
 * into its bundle and into the record its next start runs from. The config
 * (command, environment, port, user) only reaches a container through its OCI
 * spec at `runc create`: it waits for the next start. While the container
 * runs, its record stays what runs (its port is where the gateway reaches it)
 * and the new one waits beside it (`next`).
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
  const { next: pending, ...running } = await d.files.record(spec.id);
  /** What the next start would run without this change. */
  const base: InstanceRecord = pending ?? running;
  const config = parseOsInput(spec);
  if (JSON.stringify(config.volumeMiB) !== JSON.stringify(base.config.volumeMiB)) {
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
    if (image.manifest.digest !== base.imageDigest) {
      throw conflict(`image '${base.image}' changed since the instance was made: its config cannot be planned again; launch a new instance`, { image: base.image });
    }
    const userSpec = config.user ?? image.manifest.config.user;
    const user = userSpec ? await resolveImageUser(userSpec, base.lower) : undefined;
    const plan = planInstance({
      spec, config, image, tenant, address: base.address, lower: base.lower, user, driver: d.config,
      hostVeth: base.hostVeth, cgroupMode: d.cgroups.mode, ioWeight: d.cgroups.hasIoWeight(),
      rootPath: d.files.rootfsDir(spec.id), volumeDir: d.files.volumeDir(spec.id),
    });
    next = { record: { ...plan.record, createdAt: base.createdAt }, oci: plan.oci };
  } else {
    const oci = JSON.parse(await readFile(bundle, 'utf8')) as OciSpec;
    const bytes = spec.limits.memoryMiB * MIB;
    const r = oci.linux.resources;
    oci.linux.resources = {
      ...r,
      cpu: { ...r.cpu, quota: Math.round(cap(spec.limits.vcpus) * CPU_PERIOD_US), period: r.cpu?.period ?? CPU_PERIOD_US },
      memory: { ...r.memory, limit: bytes, swap: bytes },
    };
    next = { record: { ...base, spec }, oci };
  }
  validateSpec(next.oci, { allowedBindSources: [d.files.volumeDir(spec.id)] });
  const status = (await d.runtime.state(spec.id))?.status;
  const live = status === 'running' || status === 'paused';
  // runc reads the bundle only at create: writing it now changes nothing that runs.
  await writeFile(bundle, `${JSON.stringify(next.oci, null, 2)}\n`, { mode: 0o600 });
  await writeJsonAtomic(join(d.files.dir(spec.id), 'instance.json'), live ? { ...running, next: next.record } : next.record);

  const applied: Record<string, Applied> = {};
  // The cap the container has now, unless someone holds it lower: the lower of what runs and what a change already applied.
  const declaredCpu = Math.min(cap(running.spec.limits.vcpus), cap(base.spec.limits.vcpus));
  for (const field of changed) {
    applied[field] = live && field.startsWith('limits.') ? await applyLive(d.cgroups, running.cgroupsPath, spec, field, declaredCpu, cap) : 'next-restart';
  }
  return applied;
}

/** One limit on the running container's cgroup; `next-restart` where it is not written (see the file's comment). */
async function applyLive(cgroups: Cgroups, path: string, spec: InstanceSpec, field: string, declaredCpu: number, cap: (v: number) => number): Promise<Applied> {
  try {
    if (field === 'limits.vcpus') {
      const now = await cgroups.cpuLimit(path);
      if (now !== null && now < declaredCpu - 0.001) return 'next-restart';
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
