/**
 * The hasher: SHA-256 of files on all cores, by a pool of worker threads
 * (default one per core). Small files travel in batches so 100,000 of them cost
 * a few hundred messages, not 100,000; each worker reads with its own buffer.
 * A worker that dies fails only its batch and is replaced. Workers start on
 * first use.
 */
import { availableParallelism } from 'node:os';
import { Worker } from 'node:worker_threads';
import type { FileDigest, HashReply, HashRequest, WalkEntry } from './hash-worker.js';

export type { FileDigest, InodeFacts, WalkEntry } from './hash-worker.js';

export interface HasherOptions {
  /** Worker threads; default the number of cores. */
  threads?: number;
  /** Paths per message; default 64. */
  batchSize?: number;
}

export class Hasher {
  readonly #workers: Worker[] = [];
  readonly #idle: Worker[] = [];
  readonly #queue: Job[] = [];
  readonly #inFlight = new Map<Worker, Job>();
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
    const batches: Promise<FileDigest[]>[] = [];
    for (let i = 0; i < paths.length; i += this.#batchSize) {
      batches.push(this.#submit({ id: this.#nextId++, type: 'hash', paths: paths.slice(i, i + this.#batchSize) }).then((r) => ('results' in r ? r.results : [])));
    }
    return (await Promise.all(batches)).flat();
  }

  /**
   * Every entry under `root` whose '/'-prefixed path one of `include` matches,
   * with its inode facts (lstat: symlinks are entries, never followed), walked
   * on a worker thread. Rejects when the root itself cannot be read.
   */
  async walk(root: string, include: readonly RegExp[]): Promise<WalkEntry[]> {
    const reply = await this.#submit({ id: this.#nextId++, type: 'walk', root, include: [...include] });
    if ('error' in reply) throw Object.assign(new Error(`${reply.error}: cannot walk ${root}`), { code: reply.error });
    return 'entries' in reply ? reply.entries : [];
  }

  #submit(req: HashRequest): Promise<HashReply> {
    if (this.#closed) return Promise.reject(new Error('hasher is closed'));
    // Workers start on first use: a daemon with nothing to hash pays for no threads.
    while (this.#workers.length < this.#threads) this.#spawn();
    const done = new Promise<HashReply>((resolve, reject) => this.#queue.push({ req, resolve, reject }));
    this.#dispatch();
    return done;
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
      this.#inFlight.get(worker)?.resolve(reply);
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

interface Job { req: HashRequest; resolve: (r: HashReply) => void; reject: (e: Error) => void }
