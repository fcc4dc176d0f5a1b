/**
 * The hasher: SHA-256 of files on all cores, by a pool of worker threads
 * (default one per core). Small files travel in batches so 100,000 of them cost
 * a few hundred messages, not 100,000; each worker reads with its own buffer.
 * A worker that dies fails only its batch and is replaced. Workers start on
 * first use.
 */
import { availableParallelism } from 'node:os';
import { readdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { FileDigest, HashReply, HashRequest } from './hash-worker.js';

export type { FileDigest } from './hash-worker.js';

export interface HasherOptions {
  /** Worker threads; default the number of cores. */
  threads?: number;
  /** Paths per message; default 64. */
  batchSize?: number;
}

export class Hasher {
  readonly #workers: Worker[] = [];
  readonly #idle: Worker[] = [];
  readonly #queue: { req: HashRequest; resolve: (r: FileDigest[]) => void; reject: (e: Error) => void }[] = [];
  readonly #inFlight = new Map<Worker, { resolve: (r: FileDigest[]) => void; reject: (e: Error) => void }>();
  readonly #batchSize: number;
  readonly #threads: number;
  #nextId = 0;
  #closed = false;

  constructor(opts: HasherOptions = {}) {
    this.#batchSize = opts.batchSize ?? 64;
    this.#threads = opts.threads ?? availableParallelism();
  }

  /** Hashes the files, in the order given. A file that cannot be read answers `{ error }`. */
  async hashFiles(paths: readonly string[]): Promise<FileDigest[]> {
    if (this.#closed) throw new Error('hasher is closed');
    // Workers start on first use: a daemon with nothing to hash pays for no threads.
    while (this.#workers.length < this.#threads) this.#spawn();
    const batches: Promise<FileDigest[]>[] = [];
    for (let i = 0; i < paths.length; i += this.#batchSize) {
      const req: HashRequest = { id: this.#nextId++, paths: paths.slice(i, i + this.#batchSize) };
      batches.push(new Promise((resolve, reject) => this.#queue.push({ req, resolve, reject })));
    }
    this.#dispatch();
    return (await Promise.all(batches)).flat();
  }

  async hashFile(path: string): Promise<FileDigest> {
    return (await this.hashFiles([path]))[0]!;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }

  /** Starts a worker; one that dies fails its batch and is replaced, so the pool keeps its size. */
  #spawn(): void {
    const worker = new Worker(new URL('./hash-worker.js', import.meta.url));
    worker.unref();
    worker.on('message', (reply: HashReply) => {
      this.#inFlight.get(worker)?.resolve(reply.results);
      this.#inFlight.delete(worker);
      this.#idle.push(worker);
      this.#dispatch();
    });
    worker.on('error', (err) => {
      this.#inFlight.get(worker)?.reject(err);
      this.#inFlight.delete(worker);
    });
    worker.on('exit', () => {
      this.#inFlight.get(worker)?.reject(new Error('hasher worker exited'));
      this.#inFlight.delete(worker);
      this.#workers.splice(this.#workers.indexOf(worker), 1);
      if (this.#idle.includes(worker)) this.#idle.splice(this.#idle.indexOf(worker), 1);
      if (!this.#closed) { this.#spawn(); this.#dispatch(); }
    });
    this.#workers.push(worker);
    this.#idle.push(worker);
  }

  #dispatch(): void {
    while (this.#idle.length > 0 && this.#queue.length > 0) {
      const worker = this.#idle.pop()!;
      const job = this.#queue.shift()!;
      this.#inFlight.set(worker, job);
      worker.postMessage(job.req);
    }
  }
}

/** Every regular file under `root`, as paths relative to it with '/' separators, sorted. Symlinks are not followed. */
export async function listFiles(root: string): Promise<string[]> {
  const entries = await readdir(root, { recursive: true, withFileTypes: true });
  const files: string[] = [];
  for (const entry of entries) {
    if (!entry.isFile()) continue;
    const rel = relative(root, join(entry.parentPath ?? entry.path, entry.name));
    files.push(sep === '/' ? rel : rel.split(sep).join('/'));
  }
  return files.sort();
}
