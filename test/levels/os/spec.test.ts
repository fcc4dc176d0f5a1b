/**
 * The OCI spec builders and validators, without root: the whole generated
 * `config.json` for cgroup v1 and v2 against golden files, each `with…` on its
 * own, and every validator rule refusing the weakening it guards against.
 *
 * Regenerate the golden files after an intended change with
 * `UPDATE_GOLDEN=1 node --test dist/test/levels/os/spec.test.js`, and review the diff.
 */
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { isStrataError } from '../../../src/core/errors.js';
import { DENIED_SYSCALLS, defaultSeccompProfile } from '../../../src/levels/os/seccomp.js';
import {
  baseSpec, blkioToIoWeight, composeSpec, instanceSpec, withCapabilities, withCgroupLimits, withMounts, withNamespaces, withProcess,
  withUserNamespace, type CgroupMode, type InstanceSpecInput, type OciSpec,
} from '../../../src/levels/os/spec.js';
import { UnsafeSpecError, validateSpec } from '../../../src/levels/os/validate.js';

const repoRoot = join(dirname(fileURLToPath(import.meta.url)), '../../../..');
const goldenPath = (mode: CgroupMode): string => join(repoRoot, 'test/levels/os/golden', `config.${mode}.json`);

const input = (mode: CgroupMode): InstanceSpecInput => ({
  hostname: 'web',
  rootPath: '/run/strata/os/rootfs/web-1',
  args: ['/bin/httpd', '-f', '-p', '8080'],
  env: ['PORT=8080'],
  cwd: '/',
  idRange: { hostId: 1_000_065_536, count: 65_536 },
  limits: { vcpus: 0.5, memoryMiB: 128, pids: 512, blkioWeight: 500 },
  cgroupMode: mode,
  cgroupsPath: '/strata-os/t-acme/web-1',
  volumes: [{ source: '/run/strata/os/volumes/web-1', destination: '/data', readonly: false }],
  seccomp: defaultSeccompProfile('x64'),
});
const ctx = { allowedBindSources: ['/run/strata/os/volumes/web-1'] };

const expectRule = (spec: OciSpec, rule: string): void =>
  assert.throws(() => validateSpec(spec, ctx), (e: unknown) => {
    assert.ok(e instanceof UnsafeSpecError, String(e));
    assert.ok(isStrataError(e));
    assert.equal(e.code, 'STRATA_ERR_DRIVER');
    assert.equal(e.rule, rule);
    return true;
  });

describe('os spec: golden config.json', () => {
  for (const mode of ['v1', 'v2'] as const) {
    test(`cgroup ${mode}`, () => {
      const spec = instanceSpec(input(mode));
      validateSpec(spec, ctx);
      const text = `${JSON.stringify(spec, null, 2)}\n`;
      if (process.env.UPDATE_GOLDEN === '1') writeFileSync(goldenPath(mode), text);
      assert.equal(text, readFileSync(goldenPath(mode), 'utf8'));
    });
  }

  test('v1 and v2 differ only in how memory, block I/O and the OOM group are expressed', () => {
    const v1 = instanceSpec(input('v1')).linux.resources;
    const v2 = instanceSpec(input('v2')).linux.resources;
    assert.deepEqual(v1.cpu, { quota: 50_000, period: 100_000 });
    assert.deepEqual(v1.cpu, v2.cpu);
    assert.deepEqual(v1.pids, v2.pids);
    assert.deepEqual(v1.blockIO, { weight: 500 });
    assert.equal(v2.blockIO, undefined);
    assert.deepEqual(v2.unified, { 'io.weight': String(blkioToIoWeight(500)), 'memory.oom.group': '1' });
    assert.equal(v1.memory?.swappiness, 0);
    assert.equal(v2.memory?.swappiness, undefined);
  });
});

describe('os spec: builders are pure and do one thing', () => {
  test('composeSpec leaves its input untouched', () => {
    const base = baseSpec();
    const before = JSON.stringify(base);
    composeSpec(base, withNamespaces(), withUserNamespace(100_000, 65_536), withCapabilities(['CAP_KILL']), withProcess(['x'], ['A=1'], '/'));
    assert.equal(JSON.stringify(base), before);
  });

  test('withNamespaces and withUserNamespace compose in either order', () => {
    const a = composeSpec(baseSpec(), withNamespaces(), withUserNamespace(100_000, 65_536));
    const b = composeSpec(baseSpec(), withUserNamespace(100_000, 65_536), withNamespaces());
    const types = (s: OciSpec): string[] => s.linux.namespaces.map((n) => n.type).sort();
    assert.deepEqual(types(a), ['cgroup', 'ipc', 'mount', 'network', 'pid', 'user', 'uts']);
    assert.deepEqual(types(a), types(b));
    assert.deepEqual(a.linux.uidMappings, [{ containerID: 0, hostID: 100_000, size: 65_536 }]);
  });

  test('withProcess overrides image variables of the same name', () => {
    const spec = composeSpec(baseSpec(), withProcess(['a'], ['PATH=/x', 'B=2'], '/srv'));
    assert.deepEqual(spec.process.env, ['PATH=/x', 'B=2']);
    assert.equal(spec.process.cwd, '/srv');
  });

  test('withCgroupLimits: memory without swap, CPU quota from vcpus', () => {
    const spec = composeSpec(baseSpec(), withCgroupLimits({ vcpus: 2, memoryMiB: 256, pids: 100, blkioWeight: 10 }, 'v1', '/x/y'));
    assert.deepEqual(spec.linux.resources.memory, { limit: 268_435_456, swap: 268_435_456, swappiness: 0 });
    assert.deepEqual(spec.linux.resources.cpu, { quota: 200_000, period: 100_000 });
    assert.equal(blkioToIoWeight(10), 1);
    assert.equal(blkioToIoWeight(1000), 10_000);
  });

  test('the seccomp allowlist allows none of the denied syscalls unconditionally', () => {
    const profile = defaultSeccompProfile('x64');
    assert.equal(profile.defaultAction, 'SCMP_ACT_ERRNO');
    assert.deepEqual(profile.architectures, ['SCMP_ARCH_X86_64'], 'the native ABI only: no 32-bit compat entry points');
    assert.deepEqual(defaultSeccompProfile('arm64').architectures, ['SCMP_ARCH_AARCH64']);
    const unconditional = new Set(profile.syscalls.filter((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args?.length).flatMap((r) => r.names));
    for (const name of DENIED_SYSCALLS) assert.ok(!unconditional.has(name), name);
    for (const name of ['read', 'write', 'execve', 'socket', 'accept4', 'epoll_wait']) assert.ok(unconditional.has(name), name);
  });
});

describe('os spec: validators refuse each weakening', () => {
  const good = (): OciSpec => instanceSpec(input('v1'));

  test('the generated spec passes', () => validateSpec(good(), ctx));

  test('a missing namespace', () => {
    const spec = good();
    spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== 'pid');
    expectRule(spec, 'namespaces');
  });

  test('joining a host namespace', () => {
    const spec = good();
    spec.linux.namespaces = spec.linux.namespaces.map((n) => (n.type === 'network' ? { ...n, path: '/proc/1/ns/net' } : n));
    expectRule(spec, 'namespaces');
  });

  test('a mapping onto host uid 0', () => {
    expectRule(composeSpec(good(), withUserNamespace(0, 65_536)), 'user-namespace-mapping');
  });

  test('a mapping inside the host range 0..65535', () => {
    expectRule(composeSpec(good(), withUserNamespace(1000, 1)), 'user-namespace-mapping');
  });

  test('a writable root', () => {
    const spec = good();
    spec.root.readonly = false;
    expectRule(spec, 'readonly-root');
  });

  test('an unmasked /proc/kcore', () => {
    const spec = good();
    spec.linux.maskedPaths = spec.linux.maskedPaths!.filter((p) => p !== '/proc/kcore');
    expectRule(spec, 'masked-paths');
  });

  test('no seccomp profile', () => {
    const spec = good();
    delete spec.linux.seccomp;
    expectRule(spec, 'seccomp');
  });

  test('a seccomp profile that allows mount', () => {
    const spec = good();
    spec.linux.seccomp!.syscalls.push({ names: ['mount'], action: 'SCMP_ACT_ALLOW' });
    expectRule(spec, 'seccomp');
  });

  test('a seccomp profile that allows by default', () => {
    const spec = good();
    spec.linux.seccomp!.defaultAction = 'SCMP_ACT_ALLOW';
    expectRule(spec, 'seccomp');
  });

  test('CAP_SYS_ADMIN', () => {
    expectRule(composeSpec(good(), withCapabilities(['CAP_KILL', 'CAP_SYS_ADMIN'])), 'capabilities');
  });

  test('a working directory through a leaked fd (CVE-2024-21626)', () => {
    expectRule(composeSpec(good(), withProcess(['sh'], [], '/proc/self/fd/7')), 'process-cwd');
  });

  test('no_new_privs off', () => {
    const spec = good();
    spec.process.noNewPrivileges = false;
    expectRule(spec, 'no-new-privileges');
  });

  test('no pids limit', () => {
    const spec = good();
    delete spec.linux.resources.pids;
    expectRule(spec, 'cgroup-limits');
  });

  test('swap beyond the memory limit', () => {
    const spec = good();
    spec.linux.resources.memory = { limit: 1024, swap: 4096 };
    expectRule(spec, 'cgroup-limits');
  });

  test('a device allowed', () => {
    const spec = good();
    spec.linux.resources.devices.push({ allow: true, access: 'rwm', type: 'c', major: 10, minor: 232 });
    expectRule(spec, 'devices');
  });

  test('a bind mount of a host path that is not a volume', () => {
    expectRule(composeSpec(good(), withMounts([{ source: '/etc', destination: '/host-etc', readonly: true }])), 'mounts');
  });

  test('a writable sysfs', () => {
    const spec = good();
    spec.mounts = spec.mounts.map((m) => (m.type === 'sysfs' ? { ...m, options: m.options.filter((o) => o !== 'ro') } : m));
    expectRule(spec, 'mounts');
  });
});
