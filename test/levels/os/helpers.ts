/**
 * What the os-level tests share: a driver whose every host object (state dir,
 * runc root, cgroup root, interface names, firewall table, address range and id
 * range) is named after the test file, so test files may run side by side with
 * each other and with a real daemon; the built-in images; and small probes.
 *
 * `leftovers(options)` lists what such a driver left on the machine — processes
 * in its runc root, mounts under its state dir, interfaces, cgroups and its
 * firewall table — for the tests that assert nothing leaks.
 */
import { chmodSync, existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { isStrataError } from '../../../src/core/errors.js';
import type { InstanceSpec } from '../../../src/levels/driver.js';
import { ensureBuiltinImages } from '../../../src/levels/os/builtin-images.js';
import { OsDriver } from '../../../src/levels/os/driver.js';
import { run, runQuietly } from '../../../src/levels/os/exec.js';
import { ImageStore } from '../../../src/levels/os/images.js';
import { parseOsDriverOptions, type OsDriverOptions } from '../../../src/levels/os/options.js';
import { until } from '../../support/until.js';

/**
 * Options for a test driver; `slot` (1..MAX_SLOT) keeps drivers apart: tag
 * `t<letter>` or `u<letter>`, subnet 10.(200+slot).0.0/16, ids from 2e9 + slot × 2^24.
 */
export function testDriverOptions(slot: number, extra: OsDriverOptions = {}): OsDriverOptions {
  const letter = String.fromCharCode(0x61 + ((slot - 1) % 26));
  return {
    stateDir: `/var/lib/strata-test/os-${slot}`,
    runRoot: `/run/strata-test/os-${slot}`,
    cgroupRoot: `strata-test-os-${slot}`,
    subnet: `10.${200 + slot}.0.0/16`,
    idBase: 2_000_000_000 + slot * 16_777_216,
    tag: `${slot <= 26 ? 't' : 'u'}${letter}`,
    hostPorts: [],
    ...extra,
  };
}

const SLOTS_DIR = '/run/strata-test/os-slots';
const MAX_SLOT = 40;

/**
 * Claims a free slot for this process, so test files — and whole test runs, which
 * several people start at once on one machine — never share host objects. A slot
 * whose owner died is taken over after sweeping what its driver left behind
 * (the orphan path of the driver itself). Released when the process exits.
 */
export async function claimSlot(): Promise<number> {
  mkdirSync(SLOTS_DIR, { recursive: true });
  // The drivers' run roots sit beside the slots: containers must be able to walk through to their mount points.
  chmodSync('/run/strata-test', 0o755);
  // Private, as a daemon's data dir is: the driver must not need others to reach its state dir.
  mkdirSync('/var/lib/strata-test', { recursive: true });
  chmodSync('/var/lib/strata-test', 0o700);
  for (let slot = 1; slot <= MAX_SLOT; slot++) {
    const dir = join(SLOTS_DIR, String(slot));
    // The claim appears whole (owner file inside) by renaming a private dir onto the slot: atomic, and refused if taken.
    const mine = join(SLOTS_DIR, `.claim-${process.pid}-${slot}`);
    mkdirSync(mine, { recursive: true });
    writeFileSync(join(mine, 'owner'), String(process.pid));
    try {
      renameSync(mine, dir);
    } catch {
      rmSync(mine, { recursive: true, force: true });
      const owner = Number(readFileSyncSafe(join(dir, 'owner')));
      if (owner > 0 && pidAlive(owner)) continue;
      // A dead owner's slot: move its claim aside (atomic, so only one taker wins), then retry this slot once.
      const stale = join(SLOTS_DIR, `.stale-${process.pid}-${slot}`);
      try {
        renameSync(dir, stale);
      } catch {
        continue;
      }
      rmSync(stale, { recursive: true, force: true });
      slot--;
      continue;
    }
    const options = testDriverOptions(slot);
    process.once('exit', () => {
      // The files the tests' drivers leave (allocations, empty dirs); host objects are each test's own to remove.
      rmSync(options.stateDir!, { recursive: true, force: true });
      rmSync(options.runRoot!, { recursive: true, force: true });
      rmSync(dir, { recursive: true, force: true });
    });
    await sweep(options);
    return slot;
  }
  throw new Error(`all ${MAX_SLOT} os test slots are taken`);
}

/** Deletes everything a test driver with these options holds, as the reconciler removes orphans. */
export async function sweep(options: OsDriverOptions): Promise<void> {
  const driver = new OsDriver(options);
  if (!(await driver.provision()).available) return;
  for (const seen of await driver.list()) await driver.delete(seen.id);
  await driver.cleanup();
  rmSync(options.stateDir!, { recursive: true, force: true });
}

const readFileSyncSafe = (path: string): string => {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
};

const pidAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** The built-in images in the default store (the setup step makes them; this is quick when it did). */
export async function builtinImages(): Promise<void> {
  await ensureBuiltinImages(new ImageStore('/var/lib/strata/images'));
}

export function spec(id: string, tenantId: string, overrides: Partial<InstanceSpec> = {}): InstanceSpec {
  return {
    id, tenantId, name: id, level: 'os', source: 'busybox',
    limits: { vcpus: 1, memoryMiB: 64, diskMiB: 256 }, config: {}, ...overrides,
  };
}

export interface HttpAnswer {
  status: number;
  body: string;
}

/** One GET with a timeout; rejects on connection errors. */
export function httpGet(host: string, port: number, path = '/', timeoutMs = 2_000): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path, timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
    });
    req.on('timeout', () => req.destroy(new Error(`GET http://${host}:${port}${path} timed out`)));
    req.on('error', reject);
    req.end();
  });
}

/** GETs until a 200 or `timeoutMs` is up; returns the first 200. */
export async function waitFor200(host: string, port: number, timeoutMs = 5_000): Promise<HttpAnswer> {
  let last = 'no answer';
  return until(async () => {
    const answer = await httpGet(host, port, '/', 1_000).catch((e: Error) => ({ status: 0, body: e.message }));
    if (answer.status === 200) return answer;
    last = answer.status ? `HTTP ${answer.status}` : answer.body;
    return undefined;
  }, { ms: timeoutMs, every: 5, what: () => `a 200 from ${host}:${port} (last: ${last})` });
}

/** Everything a driver with these options left behind on the machine, by kind; empty lists when clean. */
export async function leftovers(options: OsDriverOptions): Promise<Record<string, string[]>> {
  const config = parseOsDriverOptions(options);
  const runcRoot = join(config.runRoot, 'runc');
  const containers = existsSync(runcRoot)
    ? ((JSON.parse((await run('runc', ['--root', runcRoot, 'list', '--format', 'json'])).stdout.trim() || 'null') ?? []) as Array<{ id: string }>).map((c) => c.id)
    : [];
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '')
    .filter((m) => m.startsWith(`${config.stateDir}/`) || m.startsWith(`${config.runRoot}/`));
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout.split('\n').flatMap((l) => {
    const name = /^\d+: ([^:@]+)/.exec(l)?.[1];
    return name && name.startsWith(config.tag) && name.length > 2 && /^[bv]/.test(name.slice(2)) ? [name] : [];
  });
  const cgroups = readdirSync('/sys/fs/cgroup').filter((h) => existsSync(join('/sys/fs/cgroup', h, config.cgroupRoot)));
  const firewall = (await runQuietly('nft', ['list', 'table', 'inet', `${config.tag}_os`])) ? [`${config.tag}_os`] : [];
  const instances = existsSync(join(config.stateDir, 'instances')) ? readdirSync(join(config.stateDir, 'instances')) : [];
  return { containers, mounts, links, cgroups, firewall, instances };
}

export const nothingLeft = (found: Record<string, string[]>): boolean => Object.values(found).every((list) => list.length === 0);

/** Asserts that `p` rejects with a StrataError of `code` (and a message matching `message`). */
export const rejectsWith = (p: Promise<unknown>, code: string, message?: RegExp): Promise<void> =>
  assert.rejects(p, (e: unknown) => {
    assert.ok(isStrataError(e), String(e));
    assert.equal(e.code, code, e.message);
    if (message) assert.match(e.message, message);
    return true;
  });
