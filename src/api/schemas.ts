/**
 * The API's zod schemas: the one source for request validation (strict: unknown
 * fields are refused) and for the OpenAPI document.
 */
import { domainToASCII } from 'node:url';
import { z } from 'zod';
import { DESIRED_STATES, STATES } from '../levels/lifecycle.js';
import { LEVEL_IDS } from '../levels/ids.js';
import { OPERATION_STATUSES, ROLES } from '../store/types.js';

/** DNS-label-like names: what tenants, instances and snapshots are called. */
export const Name = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/, 'lower-case letters, digits and inner hyphens, 1-63 characters');

export const UserName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9][a-z0-9._@-]*$/, 'lower-case letters, digits and . _ @ -, starting with a letter or digit');

/**
 * A hostname as sites use it: lower-cased, IDNA to punycode, trailing dot dropped;
 * an optional leading `*.` for a wildcard site.
 */
export const Hostname = z
  .string()
  .min(1)
  .max(253)
  .transform((raw, ctx) => {
    const wildcard = raw.startsWith('*.');
    const rest = (wildcard ? raw.slice(2) : raw).replace(/\.$/, '');
    const ascii = domainToASCII(rest);
    const labels = ascii.split('.');
    const ok =
      ascii.length > 0 &&
      ascii.length <= 253 &&
      labels.every((l) => /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(l));
    if (!ok) {
      ctx.addIssue({ code: 'custom', message: 'not a valid hostname' });
      return z.NEVER;
    }
    return wildcard ? `*.${ascii}` : ascii;
  });

export const Quota = z
  .object({
    instances: z.number().int().min(0).max(100_000),
    vcpus: z.number().min(0).max(10_000),
    memoryMiB: z.number().int().min(0).max(100_000_000),
    diskMiB: z.number().int().min(0).max(1_000_000_000),
    sites: z.number().int().min(0).max(1_000_000),
  })
  .strict();

export const Usage = Quota;

export const Tenant = z.object({
  id: z.string(),
  name: z.string(),
  quota: Quota,
  usage: Usage.optional(),
  createdAt: z.string(),
});

export const TenantCreate = z.object({ name: Name, quota: Quota.partial().strict().optional() }).strict();
export const TenantUpdate = z.object({ quota: Quota.partial().strict() }).strict();

export const Role = z.enum(ROLES);
export const User = z.object({
  id: z.string(),
  name: z.string(),
  role: Role,
  tenant: z.string().nullable(),
  createdAt: z.string(),
});
export const UserCreate = z
  .object({
    name: UserName,
    role: Role,
    /** Tenant name; required for tenant roles, refused for provider roles. */
    tenant: Name.optional(),
  })
  .strict();

/** A new role; `tenant` (a name) for a tenant role outside the user's tenant, never for provider roles. */
export const UserUpdate = z.object({ role: Role, tenant: Name.optional() }).strict();

export const Token = z.object({
  id: z.string(),
  user: z.string(),
  name: z.string(),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
});
export const TokenCreate = z
  .object({
    /** User name; defaults to the caller. */
    user: UserName.optional(),
    name: z.string().min(1).max(64).default('default'),
    expiresInDays: z.number().int().min(1).max(3650).optional(),
  })
  .strict();
export const TokenCreated = z.object({ token: Token, secret: z.string() });

export const Level = z.enum(LEVEL_IDS);
export const Limits = z
  .object({
    vcpus: z.number().min(0.1).max(256),
    memoryMiB: z.number().int().min(16).max(1_048_576),
    diskMiB: z.number().int().min(0).max(10_485_760),
  })
  .strict();
export const DEFAULT_LIMITS = { vcpus: 1, memoryMiB: 256, diskMiB: 1024 } as const;

export const Instance = z.object({
  id: z.string(),
  tenant: z.string(),
  name: z.string(),
  level: Level,
  source: z.string().nullable(),
  limits: Limits,
  config: z.record(z.string(), z.unknown()),
  desiredState: z.enum(DESIRED_STATES),
  state: z.enum(STATES),
  info: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export const InstanceCreate = z
  .object({
    name: Name,
    level: Level,
    source: z.string().min(1).max(4096).optional(),
    limits: Limits.partial().strict().optional(),
    config: z.record(z.string(), z.unknown()).optional(),
    /** Start once created (default true). */
    start: z.boolean().default(true),
  })
  .strict();
/** A change of limits and/or config; in config a null value removes the key. */
export const InstanceUpdate = z
  .object({ limits: Limits.partial().strict().optional(), config: z.record(z.string(), z.unknown()).optional() })
  .strict()
  .refine((b) => b.limits !== undefined || b.config !== undefined, { message: 'give limits, config or both' });
/** How each changed field took effect: on the running instance, or from its next start. */
export const Applied = z.record(z.string(), z.enum(['live', 'next-restart']));
export const InstanceRedeploy = z
  .object({ source: z.string().min(1).max(4096).optional(), code: z.string().min(1).max(1_000_000).optional() })
  .strict()
  .refine((b) => (b.source === undefined) !== (b.code === undefined), { message: 'give exactly one of source and code' });
export const InstanceAction = z.enum(['start', 'stop', 'pause', 'resume', 'restart']);
export const InstanceActionBody = z
  .object({ force: z.boolean().optional(), graceSeconds: z.number().int().min(0).max(3600).optional() })
  .strict();

export const SiteTarget = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('instance'), instance: Name, port: z.number().int().min(1).max(65535) }).strict(),
  z.object({ kind: z.literal('static'), root: z.string().min(1).max(4096) }).strict(),
  z
    .object({
      kind: z.literal('redirect'),
      to: z.url({ protocol: /^https?$/ }),
      status: z.union([z.literal(301), z.literal(302), z.literal(307), z.literal(308)]).default(308),
    })
    .strict(),
]);
export const Site = z.object({
  id: z.string(),
  tenant: z.string(),
  hostname: z.string(),
  target: SiteTarget,
  /** The instance an instance site follows (resolved from its name when the site was made); null for other targets. */
  instanceId: z.string().nullable(),
  /** The gateway listeners that serve it (IP- or port-based virtual hosts); null: every listener. */
  listeners: z.array(z.string()).nullable(),
  createdAt: z.string(),
});
export const SiteCreate = z.object({
  hostname: Hostname, target: SiteTarget,
  listeners: z.array(Name).min(1).max(16).refine((l) => new Set(l).size === l.length, 'listener names must be unique').optional(),
}).strict();

/** A change of a site's target and/or listeners (null: every listener). */
export const SiteUpdate = z.object({
  target: SiteTarget.optional(),
  listeners: z.array(Name).min(1).max(16).refine((l) => new Set(l).size === l.length, 'listener names must be unique').nullable().optional(),
}).strict().refine((b) => b.target !== undefined || b.listeners !== undefined, { message: 'give target, listeners or both' });

/** A domain name as the provider assigns it: a hostname without a wildcard. */
export const DomainName = Hostname.refine((h) => !h.startsWith('*.'), 'a domain, without a wildcard (it covers every name under it)');
export const Domain = z.object({
  id: z.string(),
  tenant: z.string(),
  name: z.string(),
  /** `assigned`: by the provider. */
  source: z.enum(['assigned']),
  createdAt: z.string(),
});
export const DomainCreate = z.object({ name: DomainName }).strict();

export const Snapshot = z.object({
  id: z.string(),
  tenant: z.string(),
  instance: z.string(),
  name: z.string(),
  status: z.enum(['pending', 'ready', 'failed']),
  sizeBytes: z.number(),
  digest: z.string().nullable(),
  createdAt: z.string(),
});
export const SnapshotCreate = z.object({ name: Name }).strict();

export const Operation = z.object({
  id: z.string(),
  tenant: z.string().nullable(),
  kind: z.string(),
  target: z.string(),
  status: z.enum(OPERATION_STATUSES),
  progress: z.number().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
  result: z.record(z.string(), z.unknown()).nullable(),
  createdAt: z.string(),
  updatedAt: z.string(),
});
export const WaitQuery = z.object({ wait: z.coerce.number().min(0).max(3600).optional() }).strict();

export const ErrorBody = z.object({
  error: z.object({ code: z.string(), message: z.string(), details: z.record(z.string(), z.unknown()).optional() }),
});

export const list = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item) });
