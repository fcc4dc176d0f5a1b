/** Files that hold keys and tokens. */
import { chmodSync, renameSync, writeFileSync } from 'node:fs';

/** Writes a secret file atomically with mode 0600 (never readable by others, even for an instant). */
export function writeSecret(path: string, content: string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, content, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, path);
}
