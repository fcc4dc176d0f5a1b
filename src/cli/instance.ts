/** `strata instance`: launch and drive instances at any isolation level. */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { LEVEL_IDS } from '../levels/ids.js';
import { integer, keyValue, parseRef, positiveNumber, type Ref } from './args.js';
import { clientFor, seg, withIfMatch, type Client, type Operation } from './client.js';
import { registerInstanceMove } from './move.js';
import { printPending } from './operation.js';
import { emit, keyValues, table, usageError, when } from './output.js';

/**
 * A source that names a file here is sent as its absolute path (the daemon runs
 * on this machine); anything else (an image name) goes as typed.
 */
const localSource = (source: string): string => (existsSync(source) ? resolve(source) : source);

interface Instance {
  id: string;
  tenant: string;
  name: string;
  level: string;
  source: string | null;
  limits: { vcpus: number; memoryMiB: number; diskMiB: number };
  config: Record<string, unknown>;
  desiredState: string;
  state: string;
  info: Record<string, unknown>;
  createdAt: string;
  updatedAt: string;
}

export const instancePath = (r: Ref): string => `/v1/tenants/${seg(r.tenant)}/instances/${seg(r.name)}`;

const limits = (l: Instance['limits']): string => `${l.vcpus} vCPU, ${l.memoryMiB} MiB memory, ${l.diskMiB} MiB disk`;

const showInstance = (i: Instance): string =>
  keyValues([
    ['instance', `${i.tenant}/${i.name}`], ['id', i.id], ['level', i.level],
    ['state', i.state === i.desiredState ? i.state : `${i.state} (desired: ${i.desiredState})`],
    ['source', i.source], ['limits', limits(i.limits)],
    ...Object.entries(i.config).map(([k, v]): [string, unknown] => [`config.${k}`, v]),
    ...Object.entries(i.info).map(([k, v]): [string, unknown] => [`info.${k}`, v]),
    ['created', when(i.createdAt)], ['updated', when(i.updatedAt)],
  ]);

const noWait = (cmd: Command): Command => cmd.option('--no-wait', 'return at once with the operation instead of waiting for it');

/** Waits (unless --no-wait) and prints the instance as it is afterwards. */
async function finish(c: Client, ref: Ref, res: { operation: Operation }, wait: boolean, verb: string): Promise<void> {
  if (!wait && printPending(c.config.json, res)) return;
  const settled = await c.settle(res, wait);
  const instance = await c.get<Instance>(instancePath(ref));
  emit(c.config.json, { ...settled, instance }, () => `${verb} ${ref.tenant}/${ref.name}: ${instance.state}`);
}

interface SetFlags {
  vcpus?: number;
  cpus?: number;
  memory?: number;
  disk?: number;
  config?: Record<string, unknown>;
  unsetConfig: string[];
  restart?: string;
  ifMatch?: string;
}

interface LaunchFlags {
  level: string;
  source?: string;
  vcpus?: number;
  memory?: number;
  disk?: number;
  config?: Record<string, unknown>;
  restart?: string;
  start: boolean;
  wait: boolean;
}

export function registerInstance(program: Command): void {
  const instance = program.command('instance').description('launch and manage instances');

  noWait(instance.command('launch').argument('<tenant/name>', 'the new instance, e.g. acme/web', parseRef)
    .description('launch an instance and wait until it runs')
    .addOption(new Option('--level <level>', 'isolation level').choices(LEVEL_IDS).makeOptionMandatory())
    .option('--source <source>', 'image, handler or kernel, as the level understands it')
    .option('--vcpus <n>', 'vCPU limit (default 1)', positiveNumber)
    .option('--memory <mib>', 'memory limit in MiB (default 256)', integer(16))
    .option('--disk <mib>', 'disk limit in MiB (default 1024)', integer(0))
    .option('--config <key=value>', 'level-specific setting, repeatable; values that parse as JSON are JSON', keyValue)
    .addOption(new Option('--restart <policy>', 'restart policy when its process dies (default no)').choices(['no', 'on-failure', 'always']))
    .option('--no-start', 'create the instance stopped')
    .option('--host <hostname>', 'also add a site: this hostname, served by the instance through the gateway')
    .option('--port <port>', "the instance's port the site sends to (default 80)", integer(1)))
    .action(async (ref: Ref, o: LaunchFlags & { host?: string; port?: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const lim = Object.fromEntries(Object.entries({ vcpus: o.vcpus, memoryMiB: o.memory, diskMiB: o.disk }).filter(([, v]) => v !== undefined));
      const config = o.restart ? { ...o.config, restart: o.restart } : o.config;
      const body = {
        name: ref.name, level: o.level, start: o.start,
        ...(o.source ? { source: localSource(o.source) } : {}), ...(Object.keys(lim).length ? { limits: lim } : {}), ...(config ? { config } : {}),
      };
      const res = await c.request<{ operation: Operation }>('POST', `/v1/tenants/${seg(ref.tenant)}/instances`, { body, idempotent: true });
      if (o.host) {
        const site = { hostname: o.host, target: { kind: 'instance', instance: ref.name, port: o.port ?? 80 } };
        await c.request('POST', `/v1/tenants/${seg(ref.tenant)}/sites`, { body: site, idempotent: true });
      }
      await finish(c, ref, res, o.wait, 'launched');
    });

  instance.command('list <tenant>').description("list a tenant's instances")
    .action(async (tenant: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Instance[] }>(`/v1/tenants/${seg(tenant)}/instances`);
      emit(c.config.json, res, ({ items }) => table(
        ['NAME', 'LEVEL', 'STATE', 'DESIRED', 'VCPUS', 'MEMORY', 'DISK', 'SOURCE'],
        items.map((i) => [i.name, i.level, i.state, i.desiredState, i.limits.vcpus, `${i.limits.memoryMiB} MiB`, `${i.limits.diskMiB} MiB`, i.source]),
      ));
    });

  instance.command('show').argument('<tenant/name>', 'the instance', parseRef).description('show an instance')
    .action(async (ref: Ref, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      emit(c.config.json, await c.get<Instance>(instancePath(ref)), showInstance);
    });

  const actions: Array<[string, string, string, boolean]> = [
    ['start', 'start a stopped instance', 'started', false],
    ['stop', 'stop a running instance (SIGTERM, then SIGKILL after the grace period)', 'stopped', true],
    ['pause', 'freeze a running instance', 'paused', false],
    ['resume', 'unfreeze a paused instance', 'resumed', false],
    ['restart', 'stop, then start an instance', 'restarted', true],
  ];
  for (const [action, description, verb, graceful] of actions) {
    const sub = noWait(instance.command(action).argument('<tenant/name>', 'the instance', parseRef).description(description));
    if (graceful) {
      sub.option('--force', 'do not wait for a clean shutdown').option('--grace <seconds>', 'clean shutdown time before the kill', integer(0, 3600));
    }
    sub.action(async (ref: Ref, o: { force?: boolean; grace?: number; wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const body = { ...(o.force ? { force: true } : {}), ...(o.grace !== undefined ? { graceSeconds: o.grace } : {}) };
      const res = await c.request<{ operation: Operation }>('POST', `${instancePath(ref)}/${action}`, { body });
      await finish(c, ref, res, o.wait, verb);
    });
  }

  noWait(instance.command('redeploy').argument('<tenant/name>', 'the instance', parseRef)
    .description('new code for a running instance, without dropping requests in flight (env level)')
    .requiredOption('--source <file>', 'the new handler'))
    .action(async (ref: Ref, o: { source: string; wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.request<{ operation: Operation }>('POST', `${instancePath(ref)}/redeploy`, { body: { source: localSource(o.source) } });
      await finish(c, ref, res, o.wait, 'redeployed');
    });

  noWait(instance.command('clone').argument('<tenant/name>', 'the instance the snapshot was taken of', parseRef)
    .argument('<snapshot>', 'the snapshot').argument('<new-name>', 'the new instance, in the same tenant')
    .description('a new instance from a snapshot: same level, image, limits and config; its own address and hostname')
    .option('--no-start', 'create the clone stopped'))
    .action(async (ref: Ref, snapshot: string, newName: string, o: { start: boolean; wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.request<{ operation: Operation }>('POST', `${instancePath(ref)}/snapshots/${seg(snapshot)}/clone`, {
        body: { name: newName, start: o.start }, idempotent: true,
      });
      await finish(c, { tenant: ref.tenant, name: newName }, res, o.wait, 'cloned');
    });

  withIfMatch(instance.command('set').argument('<tenant/name>', 'the instance', parseRef)
    .description("change an instance's limits and config: live where its level can, else from its next start (the answer says which)")
    .option('--vcpus <n>', 'vCPU limit', positiveNumber)
    .addOption(new Option('--cpus <n>', 'vCPU limit').argParser(positiveNumber).hideHelp())
    .option('--memory <mib>', 'memory limit in MiB', integer(16))
    .option('--disk <mib>', 'disk limit in MiB', integer(0))
    .option('--config <key=value>', 'set a level-specific setting, repeatable; values that parse as JSON are JSON', keyValue)
    .option('--unset-config <key>', 'remove a setting, repeatable', (key: string, previous: string[]) => [...previous, key], [] as string[])
    .addOption(new Option('--restart <policy>', 'restart policy when its process dies').choices(['no', 'on-failure', 'always'])))
    .action(async (ref: Ref, o: SetFlags, cmd: Command) => {
      const c = clientFor(cmd);
      const lim = Object.fromEntries(Object.entries({ vcpus: o.vcpus ?? o.cpus, memoryMiB: o.memory, diskMiB: o.disk }).filter(([, v]) => v !== undefined));
      const config = {
        ...o.config, ...(o.restart ? { restart: o.restart } : {}), ...Object.fromEntries(o.unsetConfig.map((k) => [k, null])),
      };
      if (Object.keys(lim).length === 0 && Object.keys(config).length === 0) {
        throw usageError('nothing to change: give --vcpus, --memory, --disk, --config, --unset-config or --restart');
      }
      const body = { ...(Object.keys(lim).length ? { limits: lim } : {}), ...(Object.keys(config).length ? { config } : {}) };
      const res = await c.patch<{ instance: Instance; applied: Record<string, string> }>(instancePath(ref), body, o.ifMatch);
      emit(c.config.json, { ...res.body, etag: res.etag }, ({ applied }) => {
        const fields = Object.entries(applied);
        if (fields.length === 0) return `${ref.tenant}/${ref.name}: nothing changed`;
        return [`changed ${ref.tenant}/${ref.name} (etag ${res.etag})`, ...fields.map(([f, how]) => `  ${f}: ${how}`)].join('\n');
      });
    });

  registerInstanceMove(instance);

  noWait(instance.command('delete').argument('<tenant/name>', 'the instance', parseRef)
    .description('delete an instance (stops it first) and everything it holds'))
    .action(async (ref: Ref, o: { wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.request<{ operation: Operation }>('DELETE', instancePath(ref));
      if (!o.wait && printPending(c.config.json, res)) return;
      const settled = await c.settle(res, o.wait);
      emit(c.config.json, settled, () => `deleted instance ${ref.tenant}/${ref.name}`);
    });
}
