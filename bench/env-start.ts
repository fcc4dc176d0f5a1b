/**
 * Isolate cold start and the memory an idle isolate costs.
 *
 * Cold start: the time `EnvDriver.start()` takes for a hello handler — the
 * supervisor picks a host, the host builds an isolate from the runtime
 * snapshot, compiles and evaluates the module and answers — measured for each
 * of `--isolates` instances, p50 reported. Memory: the isolate hosts' RSS with
 * every instance loaded and idle, minus their RSS before, per isolate.
 *
 * Anchor: workerd / Cloudflare Workers' published figures, ~5 ms cold start and
 * ~3 MB per isolate (not measured here: workerd is not packaged in Debian).
 *
 * Options: --isolates=N (default 1000), --hosts=N (default 2).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvDriver } from '../src/levels/env/index.js';
import { intOption, percentile, timed, type BenchOptions, type BenchResult } from './harness.js';

const HELLO = `export default { fetch() { return new Response('hello') } }`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export default async function envStart(opts: BenchOptions): Promise<BenchResult> {
  const isolates = intOption(opts, 'isolates', 1000);
  const hosts = intOption(opts, 'hosts', 2);
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-env-'));
  const driver = new EnvDriver({ stateDir: dir, hosts });
  try {
    const availability = await driver.provision();
    if (!availability.available) throw new Error(availability.reason);
    await sleep(1500);
    const rssBefore = driver.hosts().reduce((n, h) => n + h.rss, 0);
    const starts: number[] = [];
    for (let i = 0; i < isolates; i++) {
      const id = `bench-${i}`;
      await driver.create({ id, tenantId: `t${i}`, name: id, level: 'env', source: null, limits: { vcpus: 1, memoryMiB: 16, diskMiB: 1 }, config: { code: HELLO } });
      starts.push((await timed(() => driver.start(id))).ms);
    }
    await sleep(2500);
    const rssAfter = driver.hosts().reduce((n, h) => n + h.rss, 0);
    const perIsolateMiB = (rssAfter - rssBefore) / isolates / (1024 * 1024);
    starts.sort((a, b) => a - b);
    const p50 = percentile(starts, 50);
    return {
      metric: 'isolate cold start p50 (EnvDriver.start of a hello handler)',
      unit: 'ms',
      value: p50,
      anchor: 'workerd published ~5 ms cold start',
      anchor_value: 5,
      summary: [
        `${isolates} isolates on ${hosts} hosts: start p50 ${p50.toFixed(2)} ms, p90 ${percentile(starts, 90).toFixed(2)} ms, p99 ${percentile(starts, 99).toFixed(2)} ms`,
        `host RSS ${(rssBefore / 1048576).toFixed(0)} MiB before, ${(rssAfter / 1048576).toFixed(0)} MiB with ${isolates} idle isolates: ${perIsolateMiB.toFixed(2)} MiB per isolate (workerd ~3 MB)`,
      ],
      extra: {
        isolates, hosts,
        start_p90_ms: percentile(starts, 90), start_p99_ms: percentile(starts, 99),
        memory_per_isolate_mib: Math.round(perIsolateMiB * 1000) / 1000, memory_anchor_mb: 3,
      },
    };
  } finally {
    await driver.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}
