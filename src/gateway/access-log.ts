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

  constructor(path: string) {
    this.destination = pino.destination({ dest: path, append: true, mkdir: true, sync: false, minLength: 4096 });
    this.logger = pino({ base: null, timestamp: pino.stdTimeFunctions.isoTime, messageKey: 'msg' }, this.destination);
  }

  write(entry: AccessEntry): void {
    this.logger.info(entry);
  }

  /** Flushes what is buffered; resolves when the file is closed. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.destination.once('close', () => resolve());
      this.destination.end();
    });
  }
}
