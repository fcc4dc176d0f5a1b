/** `strata snapshot`: point-in-time copies of an instance. */
import type { Command } from 'commander';
import { parseRef, parseTenantOrRef, type Ref } from './args.js';
import { clientFor, seg, type Operation } from './client.js';
import { instancePath } from './instance.js';
import { printPending } from './operation.js';
import { bytes, done, emit, table, when } from './output.js';

interface Snapshot {
  id: string;
  tenant: string;
  instance: string;
  name: string;
  status: string;
  sizeBytes: number;
  digest: string | null;
  createdAt: string;
}

const refArg = ['<tenant/instance>', 'the instance, e.g. acme/web', parseRef] as const;
const noWaitFlag = ['--no-wait', 'return at once with the operation instead of waiting for it'] as const;

export function registerSnapshot(program: Command): void {
  const snapshot = program.command('snapshot').description("snapshot and restore instances");

  snapshot.command('create').argument(...refArg).argument('<snapshot>', 'a name for the snapshot')
    .description('snapshot an instance').option(...noWaitFlag)
    .action(async (ref: Ref, name: string, o: { wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.request<{ snapshot: Snapshot; operation: Operation }>('POST', `${instancePath(ref)}/snapshots`, { body: { name }, idempotent: true });
      if (!o.wait && printPending(c.config.json, res)) return;
      const settled = await c.settle(res, o.wait);
      const snapshots = await c.get<{ items: Snapshot[] }>(`${instancePath(ref)}/snapshots`);
      const latest = snapshots.items.find((s) => s.name === name) ?? res.snapshot;
      emit(c.config.json, { ...settled, snapshot: latest }, () =>
        `created snapshot ${ref.tenant}/${ref.name}@${name} (${bytes(latest.sizeBytes)}${latest.digest ? `, ${latest.digest}` : ''})`);
    });

  snapshot.command('list <tenant[/instance]>').description("list a tenant's snapshots, or one instance's")
    .action(async (what: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const { tenant, name } = parseTenantOrRef(what);
      const path = name ? `${instancePath({ tenant, name })}/snapshots` : `/v1/tenants/${seg(tenant)}/snapshots`;
      const res = await c.get<{ items: Snapshot[] }>(path);
      emit(c.config.json, res, ({ items }) => table(
        ['INSTANCE', 'NAME', 'STATUS', 'SIZE', 'DIGEST', 'CREATED'],
        items.map((s) => [s.instance, s.name, s.status, bytes(s.sizeBytes), s.digest, when(s.createdAt)]),
      ));
    });

  snapshot.command('restore').argument(...refArg).argument('<snapshot>', 'the snapshot to restore')
    .description('restore a stopped instance from one of its snapshots').option(...noWaitFlag)
    .action(async (ref: Ref, name: string, o: { wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.request<{ operation: Operation }>('POST', `${instancePath(ref)}/snapshots/${seg(name)}/restore`);
      if (!o.wait && printPending(c.config.json, res)) return;
      emit(c.config.json, await c.settle(res, o.wait), () => `restored ${ref.tenant}/${ref.name} from snapshot ${name}`);
    });

  snapshot.command('delete').argument(...refArg).argument('<snapshot>', 'the snapshot to delete').description('delete a snapshot')
    .action(async (ref: Ref, name: string, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      await c.request('DELETE', `${instancePath(ref)}/snapshots/${seg(name)}`);
      done(c.config.json, `deleted snapshot ${ref.tenant}/${ref.name}@${name}`, { deleted: 'snapshot', tenant: ref.tenant, instance: ref.name, name });
    });
}
