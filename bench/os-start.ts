/**
 * `npm run bench -- os-start [--launches=50] [--json]`: how long an os instance
 * takes from the API call that launches it to the first HTTP 200 through the
 * gateway by its hostname, p50 and p95 — beside the same launch at the driver
 * (create + start → 200 from its own address) and a bare `runc run --detach` of
 * the same busybox image serving the same httpd, all in the same run.
 *
 * The anchor is runc with none of Strata's work: no user namespace, no overlay,
 * no network namespace (it serves on host loopback), no cgroup parent, no spec
 * validation. The difference is what isolation costs at start; the API path adds
 * the store, the audit log, the operation and the gateway's route update.
 * Requires root and the built-in images (the setup step).
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import pino from 'pino';
import { startDaemon } from '../src/daemon.js';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OsDriver } from '../src/levels/os/driver.js';
import { run } from '../src/levels/os/exec.js';
import { ImageStore } from '../src/levels/os/images.js';
import type { OsDriverOptions } from '../src/levels/os/options.js';
import { intOption, percentile, timed, type Bench } from './harness.js';

const BENCH_OPTIONS = {
  stateDir: '/var/lib/strata-bench/os',
  runRoot: '/run/strata-bench/os',
  cgroupRoot: 'strata-bench-os',
  subnet: '10.199.0.0/16',
  idBase: 3_000_000_000,
  tag: 'bo',
  hostPorts: [],
} satisfies OsDriverOptions;
const ANCHOR_ROOT = '/run/strata-bench/runc-bare';
const ANCHOR_BUNDLE = '/var/lib/strata-bench/runc-bare';
const ANCHOR_PORT = 18_731;

/** GETs until the first 200 (connection refused is retried at once); `hostname` sets the Host header. */
export async function first200(host: string, port: number, timeoutMs = 10_000, hostname?: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = request({ host, port, path: '/', agent: false, timeout: 1_000, ...(hostname ? { headers: { host: hostname } } : {}) }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy());
      req.on('error', () => resolve(0));
      req.end();
    });
    if (status === 200) return;
    if (Date.now() > deadline) throw new Error(`no 200 from ${host}:${port} within ${timeoutMs} ms`);
    await sleep(1);
  }
}

/** Runs runc with stdio on /dev/null (a detached container keeps whatever it inherits open), until runc itself exits. */
export function runDetached(args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('runc', args, { stdio: 'ignore' });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`runc ${args.join(' ')} exited ${code}`))));
  });
}

/** A bare runc bundle: the busybox image's rootfs as is, runc's default spec without a network namespace. */
async function prepareAnchor(rootfs: string): Promise<void> {
  await rm(ANCHOR_BUNDLE, { recursive: true, force: true });
  await mkdir(ANCHOR_BUNDLE, { recursive: true });
  await run('runc', ['spec', '--bundle', ANCHOR_BUNDLE]);
  const spec = JSON.parse(await readFile(join(ANCHOR_BUNDLE, 'config.json'), 'utf8')) as {
    root: { path: string; readonly: boolean };
    process: { terminal: boolean; args: string[] };
    linux: { namespaces: Array<{ type: string }> };
  };
  spec.root = { path: rootfs, readonly: true };
  spec.process.terminal = false;
  spec.process.args = ['/bin/httpd', '-f', '-p', `127.0.0.1:${ANCHOR_PORT}`, '-h', '/www'];
  spec.linux.namespaces = spec.linux.namespaces.filter((ns) => ns.type !== 'network');
  await writeFile(join(ANCHOR_BUNDLE, 'config.json'), JSON.stringify(spec));
}

/** The whole path: a daemon with the os driver and a gateway; POST the instance and its site, GET through the gateway. */
async function throughApi(launches: number): Promise<{ p50: number; p95: number }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'strata-bench-'));
  const daemon = await startDaemon({
    dataDir, host: '127.0.0.1', port: 0, logger: pino({ level: 'silent' }),
    drivers: [new OsDriver({ ...BENCH_OPTIONS, stateDir: join(dataDir, 'os') })],
    gateway: { listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }] },
  });
  const token = (await readFile(daemon.tokenPath, 'utf8')).trim();
  const call = async (method: string, path: string, body?: unknown) => {
    const res = await fetch(daemon.url + path, {
      method, headers: { authorization: `Bearer ${token}`, 'x-strata-reason': 'benchmark', ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body: JSON.stringify(body) } : {}),
    });
    if (res.status >= 400) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
    const text = await res.text();
    return text ? (JSON.parse(text) as unknown) : null;
  };
  const gatewayPort = daemon.services.gateway!.addresses()[0]!.port;
  const times: number[] = [];
  try {
    await call('POST', '/v1/tenants', { name: 'bench', quota: { instances: 5, vcpus: 5, memoryMiB: 4096 } });
    for (let i = 0; i < launches; i++) {
      const host = `i${i}.bench.test`;
      const { ms } = await timed(async () => {
        await call('POST', '/v1/tenants/bench/instances', { name: `i${i}`, level: 'os', source: 'busybox', limits: { memoryMiB: 64 } });
        await call('POST', '/v1/tenants/bench/sites', { hostname: host, target: { kind: 'instance', instance: `i${i}`, port: 8080 } });
        await first200('127.0.0.1', gatewayPort, 10_000, host);
      });
      times.push(ms);
      await call('DELETE', `/v1/tenants/bench/sites/${host}`);
      await call('DELETE', `/v1/tenants/bench/instances/i${i}?wait=30`);
    }
  } finally {
    await daemon.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  times.sort((a, b) => a - b);
  return { p50: percentile(times, 50), p95: percentile(times, 95) };
}

const bench: Bench = async (opts) => {
  const launches = intOption(opts, 'launches', 50);
  const image = await new ImageStore('/var/lib/strata/images').resolve('busybox');
  const driver = new OsDriver(BENCH_OPTIONS);
  const availability = await driver.provision();
  if (!availability.available) throw new Error(`the os level is not available: ${availability.reason}`);
  await prepareAnchor(image.rootfs);

  const strata: number[] = [];
  const bare: number[] = [];
  try {
    for (let i = 0; i < launches; i++) {
      // Interleaved, so both sides see the same machine load.
      const id = `bench-${process.pid}-${i}`;
      const launched = await timed(async () => {
        await driver.create({ id, tenantId: 'bench', name: id, level: 'os', source: 'busybox', limits: { vcpus: 1, memoryMiB: 64, diskMiB: 64 }, config: {} });
        await driver.start(id);
        const { address, port } = await driver.address(id);
        await first200(address, port ?? 8080);
      });
      strata.push(launched.ms);
      await driver.stop(id, { graceMs: 0 });
      await driver.delete(id);

      const anchorId = `bare-${process.pid}-${i}`;
      const anchored = await timed(async () => {
        await runDetached(['--root', ANCHOR_ROOT, 'run', '--detach', '--bundle', ANCHOR_BUNDLE, anchorId]);
        await first200('127.0.0.1', ANCHOR_PORT);
      });
      bare.push(anchored.ms);
      await run('runc', ['--root', ANCHOR_ROOT, 'delete', '--force', anchorId]);
    }
  } finally {
    await driver.cleanup();
    await rm(ANCHOR_BUNDLE, { recursive: true, force: true });
    await rm(BENCH_OPTIONS.stateDir, { recursive: true, force: true });
  }
  const api = await throughApi(launches);

  strata.sort((a, b) => a - b);
  bare.sort((a, b) => a - b);
  const p50 = percentile(strata, 50);
  const p95 = percentile(strata, 95);
  const bareP50 = percentile(bare, 50);
  const bareP95 = percentile(bare, 95);
  return {
    metric: 'API launch to first HTTP 200 through the gateway by hostname, p50',
    unit: 'ms',
    value: api.p50,
    anchor: 'bare runc run --detach of the same image (no userns, overlay, netns), p50',
    anchor_value: Math.round(bareP50 * 1000) / 1000,
    summary: [
      `os-start: ${launches} launches of busybox httpd; ${availability.reason}`,
      `  API → gateway    p50 ${api.p50.toFixed(1)} ms   p95 ${api.p95.toFixed(1)} ms`,
      `  driver only      p50 ${p50.toFixed(1)} ms   p95 ${p95.toFixed(1)} ms`,
      `  bare runc run    p50 ${bareP50.toFixed(1)} ms   p95 ${bareP95.toFixed(1)} ms`,
    ],
    extra: { p95: api.p95, driver_p50: p50, driver_p95: p95, anchor_p95: bareP95, launches, goal_p50_ms: 100 },
  };
};

export default bench;
