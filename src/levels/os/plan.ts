/**
 * What a new os instance will be, computed before anything is made: its record
 * (what the driver keeps of it) and its OCI spec (what runc runs), from the
 * instance spec, its image, and its tenant's allocation. Pure: the driver then
 * validates the spec and writes both.
 */
import type { InstanceSpec } from '../driver.js';
import type { TenantAllocation } from './allocations.js';
import { instanceCgroupPath } from './cgroups.js';
import type { ProcessUser } from './image-user.js';
import type { ResolvedImage } from './images.js';
import type { OsInstanceConfig } from './instance-config.js';
import { VOLUME_MOUNT_POINT, type InstanceRecord } from './instance-files.js';
import type { OsDriverConfig } from './options.js';
import { defaultSeccompProfile } from './seccomp.js';
import { instanceSpec, type CgroupMode, type OciSpec } from './spec.js';

export interface PlanInput {
  spec: InstanceSpec;
  config: OsInstanceConfig;
  image: ResolvedImage;
  tenant: TenantAllocation;
  /** The instance's IPv4 address on its tenant's bridge. */
  address: string;
  /** The tenant's id-shifted copy of the image: the overlay's lower layer. */
  lower: string;
  user: ProcessUser | undefined;
  driver: Pick<OsDriverConfig, 'cgroupRoot' | 'pidsLimit' | 'blkioWeight'>;
  hostVeth: string;
  cgroupMode: CgroupMode;
  /** Whether the kernel has a weight-based I/O scheduler to give a block I/O weight to. */
  ioWeight: boolean;
  rootPath: string;
  volumeDir: string;
}

export function planInstance(i: PlanInput): { record: InstanceRecord; oci: OciSpec } {
  const { spec, config, image, tenant } = i;
  const port = config.port ?? image.manifest.config.port ?? null;
  const record: InstanceRecord = {
    spec, config, image: image.name, imageDigest: image.manifest.digest, lower: i.lower,
    hostId: tenant.hostId, tenantIndex: tenant.index, address: i.address, gateway: tenant.gateway, port,
    hostVeth: i.hostVeth,
    cgroupsPath: instanceCgroupPath(i.driver.cgroupRoot, spec.tenantId, spec.id),
    createdAt: new Date().toISOString(),
  };
  const oci = instanceSpec({
    hostname: spec.name.replace(/[^A-Za-z0-9-]/g, '-').slice(0, 63) || 'instance',
    args: config.args ?? image.manifest.config.args,
    env: [...image.manifest.config.env, ...(port !== null ? [`PORT=${port}`] : []), ...Object.entries(config.env ?? {}).map(([k, v]) => `${k}=${v}`)],
    cwd: image.manifest.config.cwd,
    idRange: { hostId: tenant.hostId, count: tenant.idCount },
    // cgroup v1 refuses a child CPU quota above its parent's, so an instance never asks for more than its tenant may use.
    limits: {
      vcpus: Math.min(spec.limits.vcpus, tenant.limits?.vcpus ?? Infinity),
      memoryMiB: spec.limits.memoryMiB,
      pids: i.driver.pidsLimit,
      blkioWeight: i.ioWeight ? i.driver.blkioWeight : undefined,
    },
    cgroupMode: i.cgroupMode,
    cgroupsPath: record.cgroupsPath,
    rootPath: i.rootPath,
    volumes: config.volumeMiB !== undefined ? [{ source: i.volumeDir, destination: VOLUME_MOUNT_POINT, readonly: false }] : [],
    seccomp: defaultSeccompProfile(),
    ...(i.user ? { user: i.user } : {}),
  });
  return { record, oci };
}
