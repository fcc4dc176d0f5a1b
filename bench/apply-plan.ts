/**
 * `POST /v1/apply` with `dryRun` for a file of 1,000 objects against a daemon
 * that already holds them all: the time from request to plan (parse, check the
 * whole file, read the state, compare), over HTTP on loopback, p50 over
 * `--runs` requests. The file: 10 tenants, each with 30 instances (on the
 * in-memory test driver: planning never calls a driver), 40 sites (30 following
 * the instances, 10 static) and 29 users.
 *
 * Anchor: the goal in issue 16 (p50 ≤ 200 ms); there is no side-by-side anchor
 * (a `kubectl apply --dry-run=server` needs a Kubernetes API server).
 *
 * Options: --runs=N (default 30), --tenants=N (default 10; 100 objects each).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import pino from 'pino';
import { startDaemon } from '../src/daemon.js';
import { FakeDriver } from '../test/support/fake-driver.js';
import { intOption, percentile, type BenchOptions, type BenchResult } from './harness.js';

const GOAL_MS = 200;

function file(tenants: number): unknown[] {
  const docs: unknown[] = [];
  for (let t = 0; t < tenants; t++) {
    const tenant = `bench-${t}`;
    docs.push({ kind: 'Tenant', name: tenant, quota: { instances: 30, vcpus: 30, memoryMiB: 30 * 256, diskMiB: 30 * 1024, sites: 40 } });
    for (let i = 0; i < 30; i++) {
      docs.push({ kind: 'Instance', tenant, name: `web-${i}`, level: 'os', source: 'debian', limits: { vcpus: 1, memoryMiB: 256, diskMiB: 1024 }, config: { port: 8080 }, restart: 'on-failure' });
    }
    for (let i = 0; i < 40; i++) {
      docs.push({
        kind: 'Site', tenant, hostname: `s${i}.${tenant}.test`,
        target: i < 30 ? { kind: 'instance', instance: `web-${i}`, port: 8080 } : { kind: 'static', root: `www/${i}` },
      });
    }
    for (let i = 0; i < 29; i++) docs.push({ kind: 'User', name: `${tenant}-u${i}`, role: i % 3 ? 'tenant-member' : 'tenant-admin', tenant });
  }
  return docs;
}

export default async function applyPlan(opts: BenchOptions): Promise<BenchResult> {
  const runs = intOption(opts, 'runs', 30);
  const tenants = intOption(opts, 'tenants', 10);
  const dataDir = mkdtempSync(join(tmpdir(), 'strata-bench-apply-'));
  const daemon = await startDaemon({
    dataDir, host: '127.0.0.1', port: 0, drivers: [new FakeDriver({ level: 'os' })], logger: pino({ level: 'silent' }), reconcileIntervalMs: 3_600_000,
  });
  try {
    const token = readFileSync(daemon.tokenPath, 'utf8').trim();
    const documents = file(tenants);
    const post = async (dryRun: boolean) => {
      const res = await fetch(`${daemon.url}/v1/apply`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'x-strata-reason': 'bench' },
        body: JSON.stringify({ documents, dryRun }),
      });
      const body = (await res.json()) as { plan?: unknown[]; summary?: unknown };
      if (res.status !== 200) throw new Error(`apply answered ${res.status}: ${JSON.stringify(body).slice(0, 300)}`);
      return body;
    };
    const t0 = performance.now();
    await post(false);
    const createMs = performance.now() - t0;
    const ms: number[] = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      const body = await post(true);
      ms.push(performance.now() - start);
      if ((body.plan ?? []).length !== 0) throw new Error(`the held file planned changes: ${JSON.stringify(body.summary)}`);
    }
    ms.sort((a, b) => a - b);
    const p50 = percentile(ms, 50);
    const p99 = percentile(ms, 99);
    return {
      metric: 'plan_p50_ms', unit: 'ms', value: p50,
      anchor: 'goal of issue 16: p50 <= 200 ms for 1,000 objects (no side-by-side anchor)', anchor_value: GOAL_MS,
      summary: [
        `file: ${documents.length} documents (${tenants} tenants × 30 instances, 40 sites, 29 users), all held by the daemon`,
        `plan (dry run, 0 changes): p50 ${p50.toFixed(1)} ms, p99 ${p99.toFixed(1)} ms over ${runs} requests`,
        `first apply (creating them all): ${createMs.toFixed(0)} ms`,
      ],
      extra: { objects: documents.length, runs, p50_ms: Math.round(p50 * 10) / 10, p99_ms: Math.round(p99 * 10) / 10, create_ms: Math.round(createMs) },
    };
  } finally {
    await daemon.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}
