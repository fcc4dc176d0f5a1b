/**
 * `strata stats [TENANT[/NAME]]`: instances' CPU, memory, network and disk use,
 * redrawn every interval like `docker stats` until Ctrl-C; `--no-stream` prints
 * once. With `--json`, each reading is one JSON line (the API's items).
 */
import type { Command } from 'commander';
import { parseTenantOrRef, positiveNumber } from './args.js';
import { clientFor, seg, type Client } from './client.js';
import { bytes, print, table } from './output.js';

export interface InstanceStats {
  tenant: string;
  name: string;
  level: string;
  state: string;
  cpu: { seconds: number | null; cores: number | null; limitCores: number | null };
  memory: { bytes: number | null; limitBytes: number | null };
  network: { rxBytes: number | null; txBytes: number | null };
  disk: { usedBytes: number | null };
  pids: number | null;
}

const size = (n: number | null): string => (n === null ? '-' : bytes(n));

/** One row per instance: CPU as a percentage of one core (as docker), memory against its limit. */
export function statsTable(items: readonly InstanceStats[]): string {
  return table(
    ['INSTANCE', 'LEVEL', 'STATE', 'CPU %', 'CPU TIME', 'MEM USAGE / LIMIT', 'MEM %', 'NET RX / TX', 'DISK', 'PIDS'],
    items.map((i) => [
      `${i.tenant}/${i.name}`, i.level, i.state,
      i.cpu.cores === null ? '-' : `${(i.cpu.cores * 100).toFixed(1)}%`,
      i.cpu.seconds === null ? '-' : `${i.cpu.seconds.toFixed(1)}s`,
      `${size(i.memory.bytes)} / ${size(i.memory.limitBytes)}`,
      i.memory.bytes !== null && i.memory.limitBytes ? `${((i.memory.bytes / i.memory.limitBytes) * 100).toFixed(1)}%` : '-',
      `${size(i.network.rxBytes)} / ${size(i.network.txBytes)}`,
      size(i.disk.usedBytes),
      i.pids,
    ]),
  );
}

async function read(c: Client, target: { tenant: string; name?: string } | undefined): Promise<InstanceStats[]> {
  if (!target) return (await c.get<{ items: InstanceStats[] }>('/v1/stats')).items;
  if (target.name) return [await c.get<InstanceStats>(`/v1/tenants/${seg(target.tenant)}/instances/${seg(target.name)}/stats`)];
  return (await c.get<{ items: InstanceStats[] }>(`/v1/tenants/${seg(target.tenant)}/stats`)).items;
}

export function registerStats(program: Command): void {
  program.command('stats').argument('[target]', 'TENANT or TENANT/NAME (default: every instance you may see)', parseTenantOrRef)
    .description("instances' CPU, memory, network and disk use, refreshed until Ctrl-C (like docker stats)")
    .option('--no-stream', 'print one reading and exit')
    .option('--interval <seconds>', 'seconds between readings', positiveNumber, 2)
    .action(async (target: { tenant: string; name?: string } | undefined, o: { stream: boolean; interval: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const tty = process.stdout.isTTY === true && !c.config.json;
      for (;;) {
        const items = await read(c, target);
        if (c.config.json) print(JSON.stringify({ items }));
        else print(`${tty && o.stream ? '\x1b[H\x1b[2J' : ''}${statsTable(items)}`);
        if (!o.stream) return;
        await new Promise((r) => setTimeout(r, Math.max(0.2, o.interval) * 1000));
      }
    });
}
