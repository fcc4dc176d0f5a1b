/**
 * A JSON-lines file of alerts, one alert per line, under `<data dir>/alerts/`
 * (0600: alerts quote evidence from every tenant). Provider outputs only. The
 * file is opened for each append, so one moved away by log rotation is made
 * again at the next alert.
 */
import { appendFile, mkdir } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import type { Attempt, FileConfig, Sink } from './types.js';

/** The file a relative `path` names inside `root`; null when it would leave it. */
export function alertFilePath(root: string, path: string): string | null {
  if (isAbsolute(path) || path.split(/[\\/]/).includes('..')) return null;
  const full = normalize(join(root, path));
  return full.startsWith(root + sep) ? full : null;
}

export class FileSink implements Sink {
  readonly #path: string;
  constructor(config: FileConfig, root: string) {
    const path = alertFilePath(root, config.path);
    if (!path) throw new Error(`output file ${config.path} is not inside ${root}`);
    this.#path = path;
  }

  async send(body: string): Promise<Attempt> {
    try {
      await mkdir(dirname(this.#path), { recursive: true, mode: 0o700 });
      await appendFile(this.#path, `${body}\n`, { mode: 0o600 });
      return { ok: true };
    } catch (e) {
      return { ok: false, error: (e as Error).message, retry: true };
    }
  }

  async close(): Promise<void> {}
}
