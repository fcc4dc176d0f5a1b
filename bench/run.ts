/**
 * `npm run bench -- NAME [--json] [--key=value…]`: runs the benchmark in
 * `bench/NAME.ts` (built to dist/bench/NAME.js). Every other .js file next to
 * this one is a benchmark, except this runner and the harness.
 */
import { readdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseBenchArgs, printResult, type Bench } from './harness.js';

const here = dirname(fileURLToPath(import.meta.url));
const available = readdirSync(here)
  .filter((f) => f.endsWith('.js') && f !== 'run.js' && f !== 'harness.js')
  .map((f) => f.slice(0, -'.js'.length))
  .sort();

const [name, ...rest] = process.argv.slice(2);
if (name === undefined || !available.includes(name)) {
  console.error(`unknown benchmark '${name ?? ''}'; available: ${available.join(', ') || '(none built)'}`);
  process.exit(2);
}

const opts = parseBenchArgs(rest);
const bench = ((await import(`./${name}.js`)) as { default: Bench }).default;
printResult(name, await bench(opts), opts);
