/** `strata operation`: long work (lifecycle, snapshots), listed and waited on. */
import { Option, type Command } from 'commander';
import { integer } from './args.js';
import { clientFor, seg, type Operation } from './client.js';
import { emit, keyValues, table, when } from './output.js';

const percent = (p: number | null): string => (p === null ? '-' : `${Math.round(p * 100)}%`);

export const showOperation = (op: Operation): string =>
  keyValues([
    ['operation', op.id], ['kind', op.kind], ['target', op.target], ['tenant', op.tenant], ['status', op.status],
    ['progress', percent(op.progress)], ['error', op.error ? `${op.error.message} (${op.error.code})` : null],
    ['result', op.result], ['created', when(op.createdAt)], ['updated', when(op.updatedAt)],
  ]);

/** The line printed for `--no-wait`: where the work can be followed. */
export function printPending(json: boolean, res: { operation: Operation }): boolean {
  const op = res.operation;
  if (op.status === 'succeeded' || op.status === 'failed') return false;
  emit(json, res, () => `${op.kind} ${op.target}: ${op.status}; follow it with: strata operation show ${op.id} --wait 60`);
  return true;
}

export function registerOperation(program: Command): void {
  const operation = program.command('operation').description('list and wait on long-running work');

  operation.command('list').description('recent operations you can see, newest first')
    .addOption(new Option('--status <status>', 'only operations in this status').choices(['pending', 'running', 'succeeded', 'failed']))
    .option('--limit <n>', 'at most N operations', integer(1, 1000), 100)
    .action(async (o: { status?: string; limit: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: Operation[] }>('/v1/operations', { status: o.status, limit: o.limit });
      emit(c.config.json, res, ({ items }) => table(
        ['ID', 'KIND', 'TARGET', 'STATUS', 'PROGRESS', 'CREATED', 'ERROR'],
        items.map((op) => [op.id, op.kind, op.target, op.status, percent(op.progress), when(op.createdAt), op.error?.message]),
      ));
    });

  operation.command('show <id>').description('show an operation; with --wait, wait for it to finish (exit 1 if it failed)')
    .option('--wait <seconds>', 'wait up to this long for the operation to finish', integer(0, 3600))
    .action(async (id: string, o: { wait?: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ operation: Operation }>(`/v1/operations/${seg(id)}`, { wait: o.wait });
      emit(c.config.json, res, ({ operation: op }) => showOperation(op));
      if (o.wait !== undefined && res.operation.status === 'failed') process.exitCode = 1;
    });
}
