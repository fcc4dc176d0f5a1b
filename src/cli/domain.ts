/** `strata domain`: the domains tenants hold; only a domain's holder puts sites in it (the provider assigns them). */
import type { Command } from 'commander';
import { clientFor, seg } from './client.js';
import { done, emit, keyValues, table, when } from './output.js';

interface Domain {
  id: string;
  tenant: string;
  name: string;
  source: string;
  createdAt: string;
}

const showDomain = (d: Domain): string =>
  keyValues([['domain', d.name], ['id', d.id], ['tenant', d.tenant], ['source', d.source], ['created', when(d.createdAt)]]);

export function registerDomain(program: Command): void {
  const domain = program.command('domain').description('domains held by tenants: the name and every name under it');

  domain.command('add <tenant> <name>')
    .description("provider-admin: assign NAME (and every name under it) to TENANT; refused while another tenant holds it or has sites in it")
    .action(async (tenant: string, name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.request<Domain>('POST', `/v1/tenants/${seg(tenant)}/domains`, { body: { name } }), showDomain);
    });

  domain.command('list <tenant>').description('the domains TENANT holds')
    .action(async (tenant: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Domain[] }>(`/v1/tenants/${seg(tenant)}/domains`);
      emit(c.config.json, res, ({ items }) => table(['DOMAIN', 'SOURCE', 'CREATED'], items.map((d) => [d.name, d.source, when(d.createdAt)])));
    });

  domain.command('show <tenant> <name>').description('one domain TENANT holds')
    .action(async (tenant: string, name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<Domain>(`/v1/tenants/${seg(tenant)}/domains/${seg(name)}`), showDomain);
    });

  domain.command('remove <tenant> <name>').description("provider-admin: take NAME back from TENANT (its sites there stay)")
    .action(async (tenant: string, name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `/v1/tenants/${seg(tenant)}/domains/${seg(name)}`);
      done(c.config.json, `removed domain ${name} from ${tenant}`, { removed: 'domain', tenant, name });
    });
}
