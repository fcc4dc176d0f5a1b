/**
 * A VM's console: its serial port, which QEMU serves on a unix socket (a
 * `-chardev socket`, see `cmdline.ts`). QEMU serves one client per socket, and
 * that client is the daemon: a `ConsoleRelay` per running VM reads everything
 * the guest prints into the rotated, size-capped serial log (`console-log.ts`)
 * and passes it on to the one attached user (`strata console`), whose keys go
 * back to the guest's serial input. A second attachment is refused with a
 * conflict until the first one ends.
 *
 * QEMU outlives the daemon; a restarted daemon connects a new relay to the
 * running VM (the driver adopts it). What the guest prints while no daemon
 * listens is dropped by QEMU, not queued.
 */
import { connect, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { StrataError, conflict } from '../../core/errors.js';
import { ConsoleLog } from './console-log.js';

/** Output held for a slow attached user before it is dropped for them (the log still gets it). */
const CLIENT_BUFFER_BYTES = 1024 * 1024;

export class ConsoleRelay {
  #client: Duplex | null = null;
  #watchers: Array<{ marker: Buffer; found: () => void }> = [];
  /** The end of the last chunk, so a marker split across two chunks is still found. */
  #carry = Buffer.alloc(0);
  /** Resolves when QEMU closed the console (it exited) or the relay was closed, and the log has everything. */
  readonly closed: Promise<void>;

  private constructor(private readonly socket: Socket, private readonly log: ConsoleLog) {
    socket.unref(); // the relay alone must not keep the daemon (or a test) alive
    socket.on('data', (chunk: Buffer) => this.#received(chunk));
    socket.on('error', () => socket.destroy());
    this.closed = new Promise<void>((resolve) => socket.once('close', resolve)).then(async () => {
      this.#client?.push(null);
      await log.drained();
    });
  }

  /** Connects to QEMU's console socket at `path`, logging into `log`. */
  static connect(path: string, log: ConsoleLog, name: string): Promise<ConsoleRelay> {
    return new Promise((resolve, reject) => {
      const socket = connect(path);
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(new ConsoleRelay(socket, log));
      });
      socket.once('error', (e: NodeJS.ErrnoException) => {
        reject(e.code === 'ENOENT' || e.code === 'ECONNREFUSED'
          ? new StrataError('STRATA_ERR_UNSUPPORTED', `${name} has no console socket: it was started before consoles existed; restart it`, { instance: name })
          : new StrataError('STRATA_ERR_DRIVER', `connecting to the console of ${name} failed: ${e.message}`, { instance: name }));
      });
    });
  }

  get isClosed(): boolean {
    return this.socket.destroyed;
  }

  /** The user's end of the serial port: what is written reaches the guest, what the guest prints comes out. One at a time. */
  attach(name: string): Duplex {
    if (this.#client) throw conflict(`the console of ${name} is in use: one client at a time`, { instance: name });
    if (this.isClosed) throw new StrataError('STRATA_ERR_DRIVER', `the console of ${name} has closed`, { instance: name });
    const socket = this.socket;
    const client: Duplex = new Duplex({
      read() {},
      write(chunk: Buffer, _encoding, done) {
        if (socket.destroyed) return done();
        socket.write(chunk, () => done());
      },
      final(done) {
        done();
      },
      destroy: (error, done) => {
        if (this.#client === client) this.#client = null;
        done(error);
      },
    });
    this.#client = client;
    return client;
  }

  /** Resolves when the guest prints `marker` after this call (e.g. a clone's STRATA-REIDENTIFIED); rejects if the console closes first. */
  waitFor(marker: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#watchers.push({ marker: Buffer.from(marker), found: resolve });
      void this.closed.then(() => reject(new StrataError('STRATA_ERR_DRIVER', `the console closed before the guest printed ${marker}`)));
    });
  }

  /** Disconnects (the VM runs on; a later relay may connect again). */
  close(): Promise<void> {
    this.socket.destroy();
    return this.closed;
  }

  #received(chunk: Buffer): void {
    this.log.write(chunk);
    // A disk slower than the guest: stop reading, so the serial line holds the guest back.
    if (this.log.backlogged && !this.socket.isPaused()) {
      this.socket.pause();
      void this.log.drained().then(() => this.socket.resume());
    }
    if (this.#client && this.#client.readableLength < CLIENT_BUFFER_BYTES) this.#client.push(chunk);
    if (this.#watchers.length) this.#match(chunk);
  }

  #match(chunk: Buffer): void {
    const seen = Buffer.concat([this.#carry, chunk]);
    this.#watchers = this.#watchers.filter((w) => {
      if (!seen.includes(w.marker)) return true;
      w.found();
      return false;
    });
    const longest = Math.max(0, ...this.#watchers.map((w) => w.marker.length - 1));
    this.#carry = seen.subarray(Math.max(0, seen.length - longest));
  }
}
