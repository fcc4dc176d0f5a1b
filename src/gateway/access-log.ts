/**
 * The access log: one JSON line per request (pino), appended by every worker
 * to one file. Each write is whole lines with O_APPEND, so workers' lines never
 * interleave. Every line names its site and tenant, so the daemon (or a log
 * shipper) can split it per site.
 */
import pino, { type Logger } from 'pino';

export interface AccessEntry {
  site: string;
  tenant: string;
  listener: string;
  ip: string;
  method: string;
  url: string;
  status: number;
  bytes: number;
  ms: number;
}

export class AccessLog {
  private readonly destination: ReturnType<typeof pino.destination>;
  private readonly logger: Logger;
  /** Set by close(): a connection that ends during shutdown must not write to a destroyed stream (it threw in the worker). */
  private closed = false;

  constructor(path: string) {
    this.destination = pino.destination({ dest: path, append: true, mkdir: true, sync: false, minLength: 4096 });
    this.logger = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, this.destination);
  }

  write(entry: AccessEntry): void {
    if (!this.closed) this.logger.info(entry);
  }

  /**
   * Opens the path anew (it was renamed away by rotation); resolves once new
   * lines go to the new file. Lines still buffered land there too: none is lost.
   */
  reopen(): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        this.destination.off('ready', done);
        this.destination.off('error', done);
        resolve();
      };
      this.destination.once('ready', done);
      this.destination.once('error', done); // cannot open: it goes on writing where it was
      this.destination.reopen();
    });
  }

  /** Flushes what is buffered; resolves when the file is closed. */
  close(): Promise<void> {
    this.closed = true;
    return new Promise((resolve) => {
      this.destination.once('close', () => resolve());
      this.destination.end();
    });
  }
}
