/**
 * `strata output`: where the guard's alerts go — webhooks, syslog, a JSON-lines
 * file. Without `--tenant`, the provider's outputs (every alert); with it, that
 * tenant's (its alerts only). A webhook's signing secret is printed once, by `add`.
 */
import { Option, type Command } from 'commander';
import { integer } from './args.js';
import { clientFor, seg } from './client.js';
import { CliError, done, emit, keyValues, print, table, usageError, when } from './output.js';

interface OutputStats { queued: number; delivered: number; failedAttempts: number; deadLetters: number; dropped: number; lastError: string | null; lastErrorAt: string | null; lastDeliveredAt: string | null }
interface Output {
  id: string; tenant: string | null; name: string; type: string; config: Record<string, unknown>;
  minPriority: string | null; rules: string[] | null; createdAt: string; error: string | null; stats: OutputStats | null; secret?: string | null;
}

const PRIORITIES = ['critical', 'error', 'warning', 'notice', 'info'];

const base = (tenant: string | undefined): string => (tenant ? `/v1/tenants/${seg(tenant)}/outputs` : '/v1/outputs');

const where = (o: Output): string => {
  const c = o.config;
  return o.type === 'webhook' ? String(c.url) : o.type === 'syslog' ? `${String(c.transport)}://${String(c.host)}:${String(c.port)}` : `alerts/${String(c.path)}`;
};

const showOutput = (o: Output): string => keyValues([
  ['output', o.name], ['id', o.id], ['owner', o.tenant ?? 'provider'], ['type', o.type], ['to', where(o)],
  ['min priority', o.minPriority ?? '-'], ['rules', o.rules?.join(', ') ?? 'all'],
  ['delivered', o.stats?.delivered ?? 0], ['failed attempts', o.stats?.failedAttempts ?? 0], ['dead letters', o.stats?.deadLetters ?? 0],
  ['dropped', o.stats?.dropped ?? 0], ['queued', o.stats?.queued ?? 0], ['last error', o.stats?.lastError ? `${o.stats.lastError} (${when(o.stats.lastErrorAt)})` : '-'],
  ...(o.error ? [['not running', o.error] as [string, unknown]] : []),
  ['created', when(o.createdAt)],
]);

/** `HOST[:PORT]` or `[IPV6][:PORT]`. */
function hostPort(value: string): { host: string; port?: number } {
  const m = /^(\[[^\]]+\]|[^:[\]]+)(?::(\d{1,5}))?$/.exec(value);
  if (!m) throw usageError(`--syslog: expected HOST[:PORT], got '${value}'`);
  return { host: m[1]!.replace(/^\[|\]$/g, ''), ...(m[2] ? { port: Number(m[2]) } : {}) };
}

interface AddFlags {
  tenant?: string; webhook?: string; syslog?: string; file?: string; tcp?: boolean; facility?: number; format?: string;
  minPriority?: string; rule: string[]; retries?: number; timeout?: number; header: string[];
}

function bodyFrom(name: string, o: AddFlags): Record<string, unknown> {
  const kinds = [o.webhook, o.syslog, o.file].filter((k) => k !== undefined).length;
  if (kinds !== 1) throw usageError('give exactly one of --webhook URL, --syslog HOST[:PORT] or --file PATH');
  const common = { name, ...(o.minPriority ? { minPriority: o.minPriority } : {}), ...(o.rule.length ? { rules: o.rule } : {}), ...(o.timeout !== undefined ? { timeoutMs: o.timeout } : {}) };
  if (o.webhook !== undefined) {
    const headers = Object.fromEntries(o.header.map((h) => {
      const i = h.indexOf(':');
      if (i <= 0) throw usageError(`--header: expected 'Name: value', got '${h}'`);
      return [h.slice(0, i).trim(), h.slice(i + 1).trim()];
    }));
    return { ...common, type: 'webhook', url: o.webhook, ...(o.retries !== undefined ? { retries: o.retries } : {}), ...(o.header.length ? { headers } : {}) };
  }
  if (o.syslog !== undefined) {
    return { ...common, type: 'syslog', ...hostPort(o.syslog), transport: o.tcp ? 'tcp' : 'udp', ...(o.facility !== undefined ? { facility: o.facility } : {}), ...(o.format ? { format: o.format } : {}) };
  }
  return { name, type: 'file', path: o.file, ...(o.minPriority ? { minPriority: o.minPriority } : {}), ...(o.rule.length ? { rules: o.rule } : {}) };
}

const repeat = (value: string, previous: string[]): string[] => [...previous, value];

export function registerAlertOutput(program: Command): void {
  const output = program.command('output').description("where the guard's alerts are delivered: webhooks, syslog, a JSON-lines file");
  const tenantOption = (): Option => new Option('--tenant <name>', "the tenant's outputs (its alerts only); default the provider's (every alert)");

  output.command('add <name>')
    .description('add an output; a webhook\'s signing secret is printed once, here')
    .addOption(tenantOption())
    .option('--webhook <url>', 'POST each alert as signed JSON to this http(s) URL')
    .option('--syslog <host[:port]>', 'send RFC 5424 messages to this host (port 514 by default)')
    .option('--file <path>', "provider only: append JSON lines to this file under the data dir's alerts/")
    .option('--tcp', 'syslog over TCP (octet counting) instead of UDP')
    .option('--facility <n>', 'syslog facility 0-23 (default 16, local0)', integer(0, 23))
    .addOption(new Option('--format <f>', 'syslog message: the alert as JSON, or its output line').choices(['json', 'text']))
    .addOption(new Option('--min-priority <p>', 'only alerts this urgent or more').choices(PRIORITIES))
    .option('--rule <name>', 'only alerts of this rule; repeat for more', repeat, [] as string[])
    .option('--retries <n>', 'webhook: attempts after the first before a dead letter (default 5)', integer(0, 10))
    .option('--timeout <ms>', 'per attempt (default 5000)', integer(100, 60_000))
    .option('--header <"Name: value">', 'webhook: an extra request header; repeat for more', repeat, [] as string[])
    .action(async (name: string, o: AddFlags, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.request<Output>('POST', base(o.tenant), { body: bodyFrom(name, o) });
      emit(c.config.json, res, (r) => `${showOutput(r)}${r.secret ? `\nsecret: ${r.secret}\n(shown once: receivers verify x-strata-signature with it)` : ''}`);
    });

  output.command('list').description('outputs with their delivery counters').addOption(tenantOption())
    .action(async (o: { tenant?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Output[] }>(base(o.tenant));
      emit(c.config.json, res, ({ items }) => table(['NAME', 'TYPE', 'TO', 'MIN', 'DELIVERED', 'DEAD', 'DROPPED', 'LAST ERROR'],
        items.map((x) => [x.name, x.type, where(x), x.minPriority ?? '-', x.stats?.delivered ?? 0, x.stats?.deadLetters ?? 0, x.stats?.dropped ?? 0, x.stats?.lastError ?? '-'])));
    });

  output.command('show <name>').description('one output, with its counters (never its secret)').addOption(tenantOption())
    .action(async (name: string, o: { tenant?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<Output>(`${base(o.tenant)}/${seg(name)}`), showOutput);
    });

  output.command('delete <name>').description('remove an output (what it still had queued is dropped)').addOption(tenantOption())
    .action(async (name: string, o: { tenant?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `${base(o.tenant)}/${seg(name)}`);
      done(c.config.json, `deleted output ${name}`, { deleted: 'output', name, tenant: o.tenant ?? null });
    });

  output.command('test <name>').description('send a test alert through the output now; exits 1 if it did not arrive').addOption(tenantOption())
    .action(async (name: string, o: { tenant?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.request<{ delivered: boolean; error: string | null }>('POST', `${base(o.tenant)}/${seg(name)}/test`);
      if (c.config.json) print(JSON.stringify(res));
      if (!res.delivered) throw new CliError(`test alert not delivered through ${name}: ${res.error ?? 'unknown error'}`);
      if (!c.config.json) print(`test alert delivered through ${name}`);
    });
}
