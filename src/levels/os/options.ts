/**
 * The `os` driver's configuration: where it keeps state, which runtime it drives,
 * and the address and id plans it hands tenants. Validated at the edge (zod,
 * strict); everything inside reads the typed, defaulted `OsDriverConfig`.
 *
 * Two drivers on one machine (a daemon and a test, say) must differ in `stateDir`,
 * `runRoot`, `cgroupRoot`, `subnet`, `idBase` and `tag`: together they name every
 * host object the driver makes.
 */
import { z } from 'zod';

export const osDriverOptionsSchema = z.object({
  /** The runtime binary: runc; crun serves where cgroup v2 is pure. */
  runtime: z.string().min(1).default('runc'),
  /** Instance bundles, allocations and shifted image copies. */
  stateDir: z.string().startsWith('/').default('/var/lib/strata/os'),
  /** The image store (`<name>/rootfs` + `<name>/manifest.json`). */
  imagesDir: z.string().startsWith('/').default('/var/lib/strata/images'),
  /** The runtime's own state root (`runc --root`), on tmpfs: it describes live processes only. */
  runRoot: z.string().startsWith('/').default('/run/strata/os'),
  /** Name of the cgroup holding every tenant's parent cgroup. */
  cgroupRoot: z.string().regex(/^[a-z][a-z0-9-]{0,30}$/).default('strata-os'),
  /** IPv4 /16 split into one /24 per tenant (tenant n gets a.b.n.0/24, its bridge holds .1). */
  subnet: z.string().regex(/^\d{1,3}\.\d{1,3}\.0\.0\/16$/).default('10.88.0.0/16'),
  /** First host uid/gid handed out; tenant n gets idBase + n × 65536 … + 65535. */
  idBase: z.number().int().min(65_536).max(0xffff_ffff - 256 * 65_536).default(1_000_000_000),
  /** Two letters that start every interface name and the firewall table (`<tag>b3`, `<tag>v1a2b3c`, `<tag>_os`). */
  tag: z.string().regex(/^[a-z]{2}$/).default('st'),
  /** Host TCP ports instances may reach on their bridge address: the gateway's. */
  hostPorts: z.array(z.number().int().min(1).max(65_535)).default([80, 443]),
  /** Per-instance pids limit (fork bombs stop here). */
  pidsLimit: z.number().int().min(16).default(512),
  /** Block I/O weight of every instance, 10..1000. */
  blkioWeight: z.number().int().min(10).max(1000).default(500),
  /** The log of an instance is rotated past this size; `logKeep` old files are kept. */
  logMaxBytes: z.number().int().min(4096).default(10 * 1024 * 1024),
  logKeep: z.number().int().min(1).max(20).default(3),
}).strict();

export type OsDriverOptions = z.input<typeof osDriverOptionsSchema>;
export type OsDriverConfig = z.output<typeof osDriverOptionsSchema>;

/** Ids per tenant: a full 16-bit range, so images that use uid 65534 (nobody) work. */
export const IDS_PER_TENANT = 65_536;
/** A /16 holds 256 tenant /24s. */
export const MAX_TENANTS = 256;

export const parseOsDriverOptions = (options: OsDriverOptions = {}): OsDriverConfig => osDriverOptionsSchema.parse(options);
