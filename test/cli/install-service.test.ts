/**
 * `strata admin install-service`: the unit text (restart on failure, after the
 * network is online, the data dir, LimitNOFILE, reload as SIGHUP), accepted by
 * `systemd-analyze verify` where the machine has it; `--enable` runs systemctl —
 * here a stand-in on PATH that records its arguments, so this machine's systemd
 * is never touched.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { systemdWord, unitText } from '../../src/cli/service.js';
import { tempDir } from '../support/temp.js';

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));
const strata = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [BIN, ...args], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '', HOME: tempDir('svc-home'), ...env } });
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

test('the unit restarts on failure, starts after the network is online, runs strata up on the data dir with its limits', () => {
  const text = unitText({ node: '/usr/bin/node', strata: '/opt/strata/bin/strata', dataDir: '/srv/strata data', apiListen: '127.0.0.1:8470', listen: ['http://0.0.0.0:80', 'https://[::]:443'], logLevel: 'warn', limitNofile: 65536 });
  const line = (key: string): string[] => text.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));
  assert.deepEqual(line('After'), ['network-online.target']);
  assert.deepEqual(line('Wants'), ['network-online.target']);
  assert.deepEqual(line('Restart'), ['on-failure']);
  assert.deepEqual(line('LimitNOFILE'), ['65536']);
  assert.deepEqual(line('ExecReload'), ['/bin/kill -HUP $MAINPID']);
  assert.deepEqual(line('WantedBy'), ['multi-user.target']);
  assert.deepEqual(line('ExecStart'), [
    '/usr/bin/node /opt/strata/bin/strata up --data-dir "/srv/strata data" --api-listen 127.0.0.1:8470 --listen http://0.0.0.0:80 --listen https://[::]:443 --log-level warn',
  ]);
});

test('words in ExecStart survive systemd: specifiers, variables and quotes escaped', () => {
  assert.equal(systemdWord('/var/lib/strata'), '/var/lib/strata');
  assert.equal(systemdWord('/data/100%'), '/data/100%%');
  assert.equal(systemdWord('/data/$HOME'), '"/data/$$HOME"');
  assert.equal(systemdWord('/a "b"\\c'), '"/a \\"b\\"\\\\c"');
  assert.throws(() => systemdWord('/a\nExecStartPre=/bin/sh'), /not usable in a systemd unit/);
});

test('install-service writes the unit (0644) that systemd-analyze verify accepts, and leaves systemd alone without --enable', { skip: !hasAnalyze && 'no systemd-analyze here' }, () => {
  const dir = tempDir('svc-units');
  const data = join(tempDir('svc-data'), 'with space');
  const r = strata(['admin', 'install-service', '--unit-dir', dir, '--data-dir', data, '--listen', 'http://127.0.0.1:8080']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^wrote .*strata\.service; enable it with: systemctl enable --now strata\n$/);
  const path = join(dir, 'strata.service');
  assert.equal(statSync(path).mode & 0o777, 0o644);
  assert.ok(readFileSync(path, 'utf8').includes(`--data-dir "${data}"`));
  const verify = spawnSync('systemd-analyze', ['verify', path], { encoding: 'utf8' });
  assert.equal(verify.status, 0, verify.stderr);
  assert.equal(verify.stderr, '', 'no warning either');
  assert.match(strata(['admin', 'install-service', '--unit-dir', dir, '--data-dir', data, '--listen', 'http://127.0.0.1:8080']).stdout, /^unchanged: /);
});

test('--enable reloads systemd and enables the unit; a failing systemctl is one line and exit 1', () => {
  const fakeBin = tempDir('svc-bin');
  const calls = join(fakeBin, 'calls');
  writeFileSync(join(fakeBin, 'systemctl'), `#!/bin/sh\necho "$*" >> ${calls}\n[ -z "$FAIL" ] || { echo "Failed to enable unit: Access denied" >&2; exit 1; }\n`);
  chmodSync(join(fakeBin, 'systemctl'), 0o755);
  const dir = tempDir('svc-units');
  const path = `${fakeBin}:${process.env.PATH ?? ''}`;
  const r = strata(['admin', 'install-service', '--unit-dir', dir, '--name', 'strata-test', '--enable'], { PATH: path });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(dir, 'strata-test.service')));
  assert.deepEqual(readFileSync(calls, 'utf8').trim().split('\n'), ['daemon-reload', 'enable strata-test.service']);
  const failed = strata(['admin', 'install-service', '--unit-dir', dir, '--name', 'strata-test', '--enable'], { PATH: path, FAIL: '1' });
  assert.equal(failed.status, 1);
  assert.match(failed.stderr, /^strata: systemctl daemon-reload failed: Failed to enable unit: Access denied \(STRATA_ERR_CONFIG\)\n$/);
  assert.equal(strata(['admin', 'install-service', '--print', '--enable']).status, 2);
});
