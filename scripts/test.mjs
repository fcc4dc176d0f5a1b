// Runs the whole test suite (compiled to dist/ by the setup script) with node's
// test runner. Test files are every `*.test.js` under dist/test/.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function find(dir) {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? find(p) : p.endsWith('.test.js') ? [p] : [];
  });
}

const filter = process.argv.slice(2);
const files = find('dist/test').filter((f) => filter.length === 0 || filter.some((x) => f.includes(x))).sort();
if (files.length === 0) {
  console.error('no test files found under dist/test');
  process.exit(1);
}
// One test file at a time: the level tests boot VMs and containers and measure
// timeouts; on a 2-core machine two of them at once make those timeouts flaky.
const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', '--test-reporter=spec', ...files], { stdio: 'inherit' });
process.exit(r.status ?? 1);
