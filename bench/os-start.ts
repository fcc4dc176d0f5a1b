/**
 * `npm run bench -- os-start [--launches=50] [--json]`: how long an os instance
 * takes from launch (driver create + start) to the first HTTP 200 from its own
 * address, p50 and p95 — beside a bare `runc run --detach` of the same busybox
 * image serving the same httpd, in the same run.
 *
 * The anchor is runc with none of Strata's work: no user namespace, no overlay,
 * no network namespace (it serves on host loopback), no cgroup parent, no spec
 * validation. The difference is what isolation costs at start. Measured at the
 * driver, not through the API and gateway yet (those add one HTTP hop each).
 * Requires root and the built-in images (the setup step).
 */
import { spawn } from 'node:child_process';
import { request } from 'node:http';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
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

/** GETs until the first 200 (connection refused is retried at once). */
async function first200(host: string, port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await new Promise<number>((resolve) => {
      const req = request({ host, port, path: '/', agent: false, timeout: 1_000 }, (res) => {
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
function runDetached(args: string[]): Promise<void> {
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

  strata.sort((a, b) => a - b);
  bare.sort((a, b) => a - b);
  const p50 = percentile(strata, 50);
  const p95 = percentile(strata, 95);
  const bareP50 = percentile(bare, 50);
  const bareP95 = percentile(bare, 95);
  return {
    metric: 'launch (create + start) to first HTTP 200 from the instance address, p50',
    unit: 'ms',
    value: p50,
    anchor: 'bare runc run --detach of the same image (no userns, overlay, netns), p50',
    anchor_value: Math.round(bareP50 * 1000) / 1000,
    summary: [
      `os-start: ${launches} launches of busybox httpd; ${availability.reason}`,
      `  strata os.runc   p50 ${p50.toFixed(1)} ms   p95 ${p95.toFixed(1)} ms`,
      `  bare runc run    p50 ${bareP50.toFixed(1)} ms   p95 ${bareP95.toFixed(1)} ms`,
    ],
    extra: { p95, anchor_p95: bareP95, launches, goal_p50_ms: 100 },
  };
};

export default bench;
