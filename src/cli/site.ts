/** `strata site`: hostnames the gateway serves, and what each one serves. */
import { InvalidArgumentError, type Command } from 'commander';
import { integer } from './args.js';
import { clientFor, seg, withIfMatch } from './client.js';
import { done, emit, keyValues, table, usageError, when } from './output.js';

type Target =
  | { kind: 'instance'; instance: string; port: number }
  | { kind: 'static'; root: string }
  | { kind: 'redirect'; to: string; status: number };

interface Site {
  id: string;
  tenant: string;
  hostname: string;
  target: Target;
  /** Listener names it is bound to; null: every listener. */
  listeners: string[] | null;
  createdAt: string;
}

export function describeTarget(t: Target): string {
  switch (t.kind) {
    case 'instance': return `instance ${t.instance} port ${t.port}`;
    case 'static': return `static ${t.root}`;
    case 'redirect': return `redirect ${t.status} ${t.to}`;
  }
}

function redirectStatus(value: string): number {
  if (!['301', '302', '307', '308'].includes(value)) throw new InvalidArgumentError('one of 301, 302, 307, 308');
  return Number(value);
}

interface AddFlags {
  instance?: string;
  port?: number;
  static?: string;
  redirect?: string;
  status?: number;
  listener?: string[];
}

/** Exactly one of --instance (with --port), --static, --redirect. */
export function targetFrom(o: AddFlags): Target {
  const kinds = [o.instance !== undefined, o.static !== undefined, o.redirect !== undefined].filter(Boolean).length;
  if (kinds !== 1) throw usageError('give exactly one of --instance NAME --port P, --static ROOT, --redirect URL');
  if (o.port !== undefined && o.instance === undefined) throw usageError('--port goes with --instance');
  if (o.status !== undefined && o.redirect === undefined) throw usageError('--status goes with --redirect');
  if (o.instance !== undefined) {
    if (o.port === undefined) throw usageError('--instance needs --port');
    return { kind: 'instance', instance: o.instance, port: o.port };
  }
  if (o.static !== undefined) return { kind: 'static', root: o.static };
  return { kind: 'redirect', to: o.redirect!, status: o.status ?? 308 };
}

const showSite = (s: Site): string =>
  keyValues([['site', s.hostname], ['id', s.id], ['tenant', s.tenant], ['target', describeTarget(s.target)], ['listeners', s.listeners?.join(', ') ?? 'all'], ['created', when(s.createdAt)]]);

/** --instance with --port, --static, or --redirect with --status: what a site serves. */
const targetOptions = (cmd: Command): Command => cmd
  .option('--instance <name>', "serve from this tenant's instance (with --port)")
  .option('--port <port>', 'the port inside the instance', integer(1, 65535))
  .option('--static <root>', "serve files from this directory inside the tenant's docroot area")
  .option('--redirect <url>', 'redirect every request to this http(s) URL')
  .option('--status <code>', 'redirect status: 301, 302, 307 or 308 (default 308)', redirectStatus);

const sitePath = (tenant: string, hostname: string): string => `/v1/tenants/${seg(tenant)}/sites/${seg(hostname)}`;

export function registerSite(program: Command): void {
  const site = program.command('site').description('manage the hostnames the gateway serves');

  targetOptions(site.command('add <tenant> <hostname>')
    .description('route a hostname (or *.domain) to an instance port, a static docroot or a redirect'))
    .option('--listener <name>', 'serve it only on this listener (IP- or port-based hosting); repeat for more; default every listener',
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .action(async (tenant: string, hostname: string, o: AddFlags, cmd: Command) => {
      const target = targetFrom(o);
      const c = clientFor(cmd);
      const body = { hostname, target, ...(o.listener?.length ? { listeners: o.listener } : {}) };
      const res = await c.request<Site>('POST', `/v1/tenants/${seg(tenant)}/sites`, { body, idempotent: true });
      emit(c.config.json, res, showSite);
    });

  withIfMatch(targetOptions(site.command('set <tenant> <hostname>')
    .description("change what a site serves (another instance port, static root or redirect) and/or its listeners"))
    .option('--listener <name>', 'serve it only on these listeners (repeat for more), instead of the ones it has',
      (value: string, previous: string[]) => [...previous, value], [] as string[])
    .option('--all-listeners', 'serve it on every listener'))
    .action(async (tenant: string, hostname: string, o: AddFlags & { allListeners?: boolean; ifMatch?: string }, cmd: Command) => {
      const retarget = o.instance !== undefined || o.static !== undefined || o.redirect !== undefined || o.port !== undefined || o.status !== undefined;
      if (o.allListeners && o.listener?.length) throw usageError('give --listener or --all-listeners, not both');
      const listeners = o.allListeners ? { listeners: null } : o.listener?.length ? { listeners: o.listener } : {};
      if (!retarget && !('listeners' in listeners)) throw usageError('nothing to change: give a target (--instance, --static, --redirect) or listeners');
      const c = clientFor(cmd);
      const res = await c.patch<Site>(sitePath(tenant, hostname), { ...(retarget ? { target: targetFrom(o) } : {}), ...listeners }, o.ifMatch);
      emit(c.config.json, { ...res.body, etag: res.etag }, (s) => `${showSite(s)}\n${keyValues([['etag', res.etag]])}`);
    });

  site.command('list <tenant>').description("list a tenant's sites")
    .action(async (tenant: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Site[] }>(`/v1/tenants/${seg(tenant)}/sites`);
      emit(c.config.json, res, ({ items }) =>
        table(['HOSTNAME', 'TARGET', 'CREATED'], items.map((s) => [s.hostname, describeTarget(s.target), when(s.createdAt)])));
    });

  site.command('show <tenant> <hostname>').description('show a site')
    .action(async (tenant: string, hostname: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<Site>(sitePath(tenant, hostname)), showSite);
    });

  site.command('remove <tenant> <hostname>').description('stop serving a hostname')
    .action(async (tenant: string, hostname: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', sitePath(tenant, hostname));
      done(c.config.json, `removed site ${hostname}`, { removed: 'site', tenant, hostname });
    });
}
