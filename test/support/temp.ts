/** Temporary directories for tests, removed when the test file's process ends. */
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];
let hooked = false;

/**
 * A fresh directory under the system's temp dir, named `strata-<prefix>-…`,
 * removed with everything in it when this test file's process exits — after
 * every test and every `after` hook, so daemons and drivers using it have
 * closed first. (Not node:test's `after`: registered from inside a `before`
 * hook, that runs as soon as the hook ends.) `mode`: e.g. 0o711 for a state
 * dir the unprivileged VM user must traverse.
 */
export function tempDir(prefix: string, opts: { mode?: number } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), `strata-${prefix}-`));
  if (opts.mode !== undefined) chmodSync(dir, opts.mode);
  made.push(dir);
  if (!hooked) {
    hooked = true;
    process.once('exit', removeAll);
  }
  return dir;
}

function removeAll(): void {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}
