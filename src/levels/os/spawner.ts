/**
 * Starting host tools (runc, ip, mount …) from a small helper process instead of
 * the daemon itself.
 *
 * Why: Node starts a child with fork(), whose cost grows with the parent's
 * memory (its page tables are copied): measured here, 4–6 ms from a 50 MB
 * process, 14–24 ms from a 350 MB one. The daemon (store, audit log, API,
 * guard …) is the large one, and an os start runs half a dozen tools, so every
 * launch paid for the daemon's size several times over. The helper is a bare
 * Node process forked once; commands travel over its IPC channel (well under a
 * millisecond) and it does the forking.
 *
 * The helper ends with its parent (IPC disconnect); if it dies, the calls in
 * flight fail and the next call starts a new one. Its channel keeps the
 * parent's event loop alive only while calls are in flight.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export interface SpawnRequest {
  id: number;
  command: string;
  args: readonly string[];
  input?: string;
  timeoutMs?: number;
  /** Append the command's stdout and stderr to this file (created 0640), stdin /dev/null; no output is returned. */
  logPath?: string;
}

export interface SpawnReply {
  id: number;
  /** Exit code; null when killed or when it could not start (`error`). */
  code: number | null;
  stdout: string;
  stderr: string;
  error?: string | undefined;
}

const CHILD = fileURLToPath(new URL('./spawner-child.js', import.meta.url));

class Spawner {
  #child: ChildProcess | null = null;
  #next = 1;
  readonly #pending = new Map<number, (r: SpawnReply) => void>();

  /** The helper's pid while it runs. */
  get pid(): number | null {
    return this.#child?.pid ?? null;
  }

  run(req: Omit<SpawnRequest, 'id'>): Promise<SpawnReply> {
    const child = this.#ensure();
    const id = this.#next++;
    return new Promise((resolve) => {
      this.#pending.set(id, resolve);
      if (this.#pending.size === 1) child.channel?.ref();
      child.send({ ...req, id } satisfies SpawnRequest, (e) => {
        if (e) this.#settle({ id, code: null, stdout: '', stderr: '', error: `spawn helper: ${e.message}` });
      });
    });
  }

  #settle(r: SpawnReply): void {
    const resolve = this.#pending.get(r.id);
    if (!resolve) return;
    this.#pending.delete(r.id);
    if (this.#pending.size === 0) this.#child?.channel?.unref();
    resolve(r);
  }

  #ensure(): ChildProcess {
    if (this.#child) return this.#child;
    const child = fork(CHILD, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], execArgv: ['--max-old-space-size=64'], serialization: 'json' });
    child.on('message', (m) => this.#settle(m as SpawnReply));
    const gone = (why: string): void => {
      if (this.#child !== child) return;
      this.#child = null;
      for (const id of [...this.#pending.keys()]) this.#settle({ id, code: null, stdout: '', stderr: '', error: `spawn helper ${why}` });
    };
    // The channel closing is the first sign (and, with the process handle unref'd, maybe the only one before the loop would end).
    child.on('disconnect', () => gone('exited (its channel closed)'));
    child.on('exit', (code, signal) => gone(`exited (${signal ?? code})`));
    child.on('error', (e) => gone(`failed: ${e.message}`));
    child.unref();
    child.channel?.unref();
    this.#child = child;
    return child;
  }
}

/** The process-wide helper; null where its script is missing (then callers spawn themselves). */
export const spawner: Spawner | null = existsSync(CHILD) ? new Spawner() : null;
