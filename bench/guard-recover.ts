/**
 * Compromise → clean content served again, through the whole system: a daemon
 * with the os driver (runc), the gateway and the guard. Two kinds of site:
 *
 *  - container: a busybox web instance behind the gateway; each round defaces
 *    its /www/index.html (from the host side: the container's root is
 *    read-only from inside) and polls the gateway every 2 ms until the visitor
 *    gets the clean page again — served by the replacement the guard restored
 *    from the known-good snapshot, after the gateway swapped its route. The
 *    frozen old instance is deleted between rounds (quota).
 *  - static: a docroot; each round defaces index.html and polls until the
 *    known-good copy is back.
 *
 * Reports the container's p50 (the headline) and p99, and the static site's.
 * Goal ≤ 1 s. Anchor: none of Incus, Proxmox, Caddy or Falco recovers on its
 * own; a person redeploying by hand takes minutes. The goal is the figure.
 *
 * Options: --rounds=N container rounds (default 10), --static=N static rounds (default 30).
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { startDaemon } from '../src/daemon.js';
import { OsDriver } from '../src/levels/os/driver.js';
import type { OsDriverOptions } from '../src/levels/os/options.js';
import { intOption, percentile, type BenchOptions, type BenchResult } from './harness.js';

const GOAL_MS = 1000;
const OPTIONS = {
  stateDir: '/var/lib/strata-bench/recover-os',
  runRoot: '/run/strata-bench/recover-os',
  cgroupRoot: 'strata-bench-recover',
  subnet: '10.198.0.0/16',
  idBase: 3_200_000_000,
  tag: 'br',
  hostPorts: [],
} satisfies OsDriverOptions;

function visit(port: number, host: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', headers: { host }, timeout: 1000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve({ status: 0, body: '' }));
    req.end();
  });
}

/** Polls the gateway until `host` answers `clean`; ms from `start`. */
async function untilClean(port: number, host: string, clean: string, start: number, limitMs = 30_000): Promise<number> {
  while (performance.now() - start < limitMs) {
    const r = await visit(port, host);
    if (r.status === 200 && r.body === clean) return performance.now() - start;
    await sleep(2);
  }
  throw new Error(`${host} did not serve clean content within ${limitMs} ms`);
}

async function until(what: () => unknown, limitMs = 30_000): Promise<void> {
  for (const end = Date.now() + limitMs; Date.now() < end; await sleep(10)) if (await what()) return;
  throw new Error('timed out');
}

export default async function guardRecover(opts: BenchOptions): Promise<BenchResult> {
  const rounds = intOption(opts, 'rounds', 10);
  const staticRounds = intOption(opts, 'static', 30);
  const dataDir = mkdtempSync(join(tmpdir(), 'strata-bench-recover-'));
  const driver = new OsDriver(OPTIONS);
  const daemon = await startDaemon({
    dataDir, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }), drivers: [driver], reconcileIntervalMs: 3_600_000,
    gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }] },
    guard: { knownGoodDelayMs: 0 },
  });
  const token = readFileSync(daemon.tokenPath, 'utf8').trim();
  const call = async (method: string, path: string, body?: unknown): Promise<any> => {
    const res = await fetch(daemon.url + path, {
      method, headers: { authorization: `Bearer ${token}`, 'x-strata-reason': 'benchmark', ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    const text = await res.text();
    if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${text}`);
    return text ? JSON.parse(text) : null;
  };
  const port = daemon.services.gateway!.addresses()[0]!.port;
  const { monitor } = daemon.integrity;
  const container: number[] = [];
  const statics: number[] = [];
  try {
    const tenant = (await call('POST', '/v1/tenants', { name: 'bench', quota: { instances: 3, vcpus: 3, memoryMiB: 1024 } })) as { id: string };

    // Static docroot.
    const docroot = join(dataDir, 'docroots', tenant.id, 'www');
    mkdirSync(docroot, { recursive: true });
    writeFileSync(join(docroot, 'index.html'), '<h1>clean</h1>');
    await call('POST', '/v1/tenants/bench/sites', { hostname: 'www.bench.test', target: { kind: 'static', root: 'www' } });
    await until(() => monitor.tree(`docroot:${tenant.id}/www`));
    await untilClean(port, 'www.bench.test', '<h1>clean</h1>', performance.now());
    for (let i = 0; i < staticRounds; i++) {
      const start = performance.now();
      writeFileSync(join(docroot, 'index.html'), `<h1>defaced ${i}</h1>`);
      statics.push(await untilClean(port, 'www.bench.test', '<h1>clean</h1>', start));
      await sleep(20);
    }

    // Container.
    const launched = await call('POST', '/v1/tenants/bench/instances?wait=30', { name: 'web', level: 'os', source: 'busybox', limits: { memoryMiB: 64 } });
    let current = { id: launched.instance.id as string, name: 'web' };
    await call('POST', '/v1/tenants/bench/sites', { hostname: 'web.bench.test', target: { kind: 'instance', instance: 'web', port: 8080 } });
    for (let i = 0; i < rounds; i++) {
      await until(() => monitor.tree(`instance:${current.id}`));
      await untilClean(port, 'web.bench.test', 'busybox ok\n', performance.now());
      const start = performance.now();
      writeFileSync(join(OPTIONS.runRoot, 'rootfs', current.id, 'www', 'index.html'), `defaced ${i}\n`);
      container.push(await untilClean(port, 'web.bench.test', 'busybox ok\n', start).catch((e: Error) => {
        const failed = daemon.services.guard.alerts({}).filter((a) => a.rule === 'guard.action.failed').map((a) => a.output);
        throw new Error(`${e.message}${failed.length ? `; the guard said: ${failed.join('; ')}` : ''}`);
      }));
      await daemon.services.guard.drained();
      const site = daemon.services.store.getSite('web.bench.test')!;
      const next = daemon.services.store.getInstance(daemon.services.store.getSite('web.bench.test')!.tenantId, (site.target as { instance: string }).instance)!;
      await call('DELETE', `/v1/tenants/bench/instances/${current.name}?wait=30`);
      current = { id: next.id, name: next.name };
    }
  } finally {
    for (const i of (await call('GET', '/v1/tenants/bench/instances').catch(() => ({ items: [] }))).items) {
      await call('DELETE', `/v1/tenants/bench/instances/${i.name}?wait=30`).catch(() => undefined);
    }
    await daemon.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
  container.sort((a, b) => a - b);
  statics.sort((a, b) => a - b);
  const p50 = percentile(container, 50), p99 = percentile(container, 99);
  const s50 = percentile(statics, 50), s99 = percentile(statics, 99);
  return {
    metric: `container tamper → clean content served again through the gateway (hot recovery from the known-good snapshot), p50 over ${rounds} rounds`,
    unit: 'ms',
    value: p50,
    anchor: 'goal 1,000 ms (no anchor offers built-in hot recovery: Incus, Proxmox, Caddy, Falco)',
    anchor_value: GOAL_MS,
    summary: [
      `container: p50 ${p50.toFixed(0)} ms, p99 ${p99.toFixed(0)} ms, max ${container[container.length - 1]!.toFixed(0)} ms over ${rounds} rounds`,
      `static docroot: p50 ${s50.toFixed(1)} ms, p99 ${s99.toFixed(1)} ms over ${staticRounds} rounds`,
    ],
    extra: { p50_ms: round(p50), p99_ms: round(p99), static_p50_ms: round(s50), static_p99_ms: round(s99), rounds, static_rounds: staticRounds },
  };
}

const round = (x: number): number => Math.round(x * 10) / 10;
