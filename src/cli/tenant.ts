/** `strata tenant`: the provider's customers and their quotas. */
import type { Command } from 'commander';
import { integer, positiveNumber } from './args.js';
import { clientFor, seg } from './client.js';
import { done, emit, keyValues, table, usageError, when } from './output.js';

type Quota = Record<'instances' | 'vcpus' | 'memoryMiB' | 'diskMiB' | 'sites', number>;
interface Tenant {
  id: string;
  name: string;
  quota: Quota;
  usage?: Quota;
  createdAt: string;
}

const RESOURCES: Array<[keyof Quota, string]> = [
  ['instances', 'instances'], ['vcpus', 'vCPUs'], ['memoryMiB', 'memory MiB'], ['diskMiB', 'disk MiB'], ['sites', 'sites'],
];

interface QuotaFlags {
  instances?: number;
  vcpus?: number;
  memory?: number;
  disk?: number;
  sites?: number;
}

const quotaOptions = (cmd: Command): Command =>
  cmd
    .option('--instances <n>', 'most instances', integer(0))
    .option('--vcpus <n>', 'most vCPUs over all instances', positiveNumber)
    .option('--memory <mib>', 'most memory over all instances, MiB', integer(0))
    .option('--disk <mib>', 'most disk over all instances and snapshots, MiB', integer(0))
    .option('--sites <n>', 'most sites', integer(0));

function quotaFrom(o: QuotaFlags): Partial<Quota> {
  const q: Partial<Quota> = { instances: o.instances, vcpus: o.vcpus, memoryMiB: o.memory, diskMiB: o.disk, sites: o.sites };
  return Object.fromEntries(Object.entries(q).filter(([, v]) => v !== undefined));
}

export const showTenant = (t: Tenant): string =>
  `${keyValues([['tenant', t.name], ['id', t.id], ['created', when(t.createdAt)]])}\n\n` +
  table(['RESOURCE', 'USED', 'QUOTA'], RESOURCES.map(([k, label]) => [label, t.usage?.[k] ?? '-', t.quota[k]]));

export function registerTenant(program: Command): void {
  const tenant = program.command('tenant').description("manage tenants (the provider's customers) and their quotas");

  quotaOptions(tenant.command('create <name>').description('create a tenant; unset quota fields take the defaults'))
    .action(async (name: string, o: QuotaFlags, cmd: Command) => {
      const c = clientFor(cmd);
      const quota = quotaFrom(o);
      const t = await c.request<Tenant>('POST', '/v1/tenants', {
        body: { name, ...(Object.keys(quota).length ? { quota } : {}) }, idempotent: true,
      });
      emit(c.config.json, t, showTenant);
    });

  tenant.command('list').description('list the tenants you can see, usage/quota per resource')
    .action(async (_o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Tenant[] }>('/v1/tenants');
      emit(c.config.json, res, ({ items }) => table(
        ['NAME', ...RESOURCES.map(([, l]) => l.toUpperCase()), 'CREATED'],
        items.map((t) => [t.name, ...RESOURCES.map(([k]) => `${t.usage?.[k] ?? '-'}/${t.quota[k]}`), when(t.createdAt)]),
      ));
    });

  tenant.command('show <name>').description("show a tenant's quota and usage side by side")
    .action(async (name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<Tenant>(`/v1/tenants/${seg(name)}`), showTenant);
    });

  quotaOptions(tenant.command('quota <name>').description("change a tenant's quota (only the resources given)"))
    .action(async (name: string, o: QuotaFlags, cmd: Command) => {
      const quota = quotaFrom(o);
      if (!Object.keys(quota).length) throw usageError('give at least one of --instances, --vcpus, --memory, --disk, --sites');
      const c = clientFor(cmd);
      emit(c.config.json, await c.request<Tenant>('PATCH', `/v1/tenants/${seg(name)}`, { body: { quota } }), showTenant);
    });

  tenant.command('delete <name>').description('delete an empty tenant, with its users, tokens and files (docroots, logs, KV, snapshot store)')
    .option('--quarantine', "keep the tenant's files, moved aside to DATA/quarantine/<tenant id>-<time>/")
    .action(async (name: string, o: { quarantine?: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `/v1/tenants/${seg(name)}${o.quarantine ? '?quarantine=true' : ''}`);
      done(c.config.json, `deleted tenant ${name}`, { deleted: 'tenant', name });
    });
}
