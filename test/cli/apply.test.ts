/**
 * `strata apply` and `strata get TENANT -o yaml` as a user runs them: a YAML
 * file's plan printed as a diff, applied, applied again (no changes), exported
 * and applied back (no changes), a directory and stdin, and an error that names
 * the file and the document.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FakeDriver } from '../support/fake-driver.js';
import { TestDaemon } from '../support/harness.js';
import { tempDir } from '../support/temp.js';

const BIN = fileURLToPath(new URL('../../../bin/strata', import.meta.url));
let d: TestDaemon;
let dir: string;

const strata = (args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> =>
  new Promise((resolve) => {
    const child = execFile(process.execPath, [BIN, ...args], {
      env: { PATH: process.env.PATH ?? '', HOME: dir, STRATA_URL: d.url, STRATA_TOKEN: d.adminToken }, timeout: 30_000,
    }, (err, stdout, stderr) => resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr }));
    if (input !== undefined) child.stdin!.end(input);
  });

const YAML = `kind: Tenant
name: cli
quota: {instances: 3}
---
kind: Instance
tenant: cli
name: web
level: os
limits: {memoryMiB: 128}
---
kind: Site
tenant: cli
hostname: www.cli.test
target: {kind: instance, instance: web, port: 8080}
`;

before(async () => {
  d = await TestDaemon.start({ drivers: [new FakeDriver({ level: 'os' })] });
  dir = tempDir('apply-cli');
  mkdirSync(join(dir, 'conf'));
  writeFileSync(join(dir, 'conf', 'cli.yaml'), YAML);
});
after(() => d.close());

test('dry run prints the plan as a diff; apply makes it; again: no changes', async () => {
  const dry = await strata(['--reason', 'cli test', 'apply', '-f', join(dir, 'conf', 'cli.yaml'), '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /^\+ create tenant cli/m);
  assert.match(dry.stdout, /^\+ create instance cli\/web/m);
  assert.match(dry.stdout, /Plan: 3 to create, 0 to change, 0 to replace, 0 to delete\./);
  const r = await strata(['--reason', 'cli test', 'apply', '-f', join(dir, 'conf')]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /Applied: 3 to create/);
  const again = await strata(['--reason', 'cli test', 'apply', '-f', '-'], YAML);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /No changes/);
});

test('a changed field is one ~ line naming it; export → apply plans nothing', async () => {
  const changed = YAML.replace('memoryMiB: 128', 'memoryMiB: 192');
  const dry = await strata(['--reason', 'cli test', 'apply', '-f', '-', '--dry-run'], changed);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(dry.stdout, /limits\.memoryMiB: 128 → 192/);
  const out = await strata(['get', 'cli', '-o', 'yaml']);
  assert.equal(out.code, 0, out.stderr);
  assert.match(out.stdout, /kind: Instance/);
  const back = await strata(['--reason', 'cli test', 'apply', '-f', '-'], out.stdout);
  assert.equal(back.code, 0, back.stderr);
  assert.match(back.stdout, /No changes/);
});

test('an invalid file is refused whole, naming the file and the document', async () => {
  const bad = join(dir, 'bad.yaml');
  writeFileSync(bad, `${YAML}---\nkind: Instance\ntenant: cli\nname: extra\nlevel: os\ncolour: red\n`);
  const r = await strata(['--reason', 'cli test', 'apply', '-f', bad]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /bad\.yaml document 4: colour: .*\(STRATA_ERR_VALIDATION\)/);
  assert.equal((await d.request('GET', '/v1/tenants/cli/instances/extra')).status, 404);
});
