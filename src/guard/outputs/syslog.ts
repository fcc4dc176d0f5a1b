/**
 * Syslog delivery (RFC 5424 messages): over UDP one datagram per alert (RFC
 * 5426), over TCP a stream of octet-counted frames, `<length> <message>` (RFC
 * 6587 §3.4.1), on one connection kept open and made again after an error.
 *
 * The message: `<PRI>1 TIMESTAMP HOSTNAME strata PROCID alert [strata@32473
 * id=… rule=… priority=… tenant=… instance=… action=…] MSG`, PRI being the
 * facility × 8 + the severity the alert's priority maps to; MSG is the alert
 * as JSON (or its one-line output text) after a UTF-8 BOM, as §6.4 asks for
 * UTF-8 content.
 */
import { createSocket, type Socket as UdpSocket, type SocketOptions } from 'node:dgram';
import { connect, isIP, type Socket } from 'node:net';
import { hostname } from 'node:os';
import type { Priority } from '../../core/guard-event.js';
import type { Alert } from '../actuator.js';
import { isPrivateHost, publicLookup } from './address.js';
import type { Attempt, Sink, SyslogConfig } from './types.js';

/** RFC 5424 §6.2.1 severities. */
const SEVERITY: Record<Priority, number> = { critical: 2, error: 3, warning: 4, notice: 5, info: 6 };

/** The IANA example enterprise number (RFC 5612), which SD-IDs of private use may carry. */
const SD_ID = 'strata@32473';

/** PRINTUSASCII without spaces, at most `max` characters; '-' (the NILVALUE) when empty. */
const header = (s: string, max: number): string => s.replace(/[^\x21-\x7e]/g, '').slice(0, max) || '-';

/** An SD-PARAM value: `"`, `\` and `]` escaped (§6.3.3). */
const paramValue = (v: unknown): string => String(v).replace(/[\\"\]]/g, (c) => `\\${c}`);

export function syslogMessage(alert: Alert, opts: { facility: number; format: 'json' | 'text'; host?: string }): string {
  const pri = opts.facility * 8 + SEVERITY[alert.priority];
  const params: Array<[string, unknown]> = [
    ['id', alert.id], ['rule', alert.rule], ['priority', alert.priority], ['tenant', alert.tenantId ?? '-'],
    ['instance', alert.instanceId ?? '-'], ['action', alert.action], ['auditIndex', alert.auditIndex],
  ];
  const sd = `[${SD_ID} ${params.map(([k, v]) => `${k}="${paramValue(v)}"`).join(' ')}]`;
  const msg = opts.format === 'json' ? JSON.stringify(alert) : alert.output;
  return `<${pri}>1 ${alert.time} ${header(opts.host ?? hostname(), 255)} strata ${process.pid} alert ${sd} \ufeff${msg}`;
}

/** One octet-counted frame (RFC 6587 §3.4.1): the length in bytes, a space, the message. */
export const octetFrame = (message: string): Buffer => {
  const m = Buffer.from(message, 'utf8');
  return Buffer.concat([Buffer.from(`${m.length} `), m]);
};

/** The largest UDP payload over IPv4; a longer message is cut (a datagram cannot be longer). */
const MAX_DATAGRAM = 65_507;

export class SyslogSink implements Sink {
  #udp: UdpSocket | undefined;
  #tcp: Socket | undefined;
  #tcpReady: Promise<Socket> | undefined;

  constructor(readonly config: SyslogConfig, private readonly restricted: boolean) {}

  async send(_body: string, alert: Alert): Promise<Attempt> {
    if (this.restricted && isPrivateHost(this.config.host)) {
      return { ok: false, error: `${this.config.host} is a private address a tenant's output may not reach`, retry: false };
    }
    const message = syslogMessage(alert, this.config);
    try {
      await this.#deadline(this.config.transport === 'udp' ? this.#sendUdp(message) : this.#sendTcp(message));
      return { ok: true };
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      return { ok: false, error: err.message, retry: err.code !== 'STRATA_PRIVATE_ADDRESS' };
    }
  }

  async close(): Promise<void> {
    this.#udp?.close();
    this.#udp = undefined;
    this.#dropTcp();
  }

  #deadline<T>(p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        // A stuck connection is dropped; the next attempt connects afresh.
        this.#dropTcp();
        reject(new Error(`no progress within ${this.config.timeoutMs} ms`));
      }, this.config.timeoutMs);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  #sendUdp(message: string): Promise<void> {
    const buf = Buffer.from(message, 'utf8').subarray(0, MAX_DATAGRAM);
    if (!this.#udp) {
      const family = isIP(this.config.host) === 6 ? 'udp6' : 'udp4';
      this.#udp = createSocket({ type: family, ...(this.restricted ? { lookup: publicLookup as SocketOptions['lookup'] } : {}) });
      this.#udp.on('error', () => { this.#udp?.close(); this.#udp = undefined; });
      this.#udp.unref();
    }
    const udp = this.#udp;
    return new Promise((resolve, reject) => udp.send(buf, this.config.port, this.config.host, (err) => (err ? reject(err) : resolve())));
  }

  async #sendTcp(message: string): Promise<void> {
    const socket = await (this.#tcpReady ??= this.#connect());
    await new Promise<void>((resolve, reject) => {
      socket.write(octetFrame(message), (err) => (err ? reject(err) : resolve()));
    }).catch((e: unknown) => { this.#dropTcp(); throw e; });
  }

  #connect(): Promise<Socket> {
    return new Promise<Socket>((resolve, reject) => {
      const socket = connect({ host: this.config.host, port: this.config.port, ...(this.restricted ? { lookup: publicLookup } : {}) });
      this.#tcp = socket;
      socket.setNoDelay(true);
      socket.unref();
      socket.once('connect', () => resolve(socket));
      socket.on('error', (e) => { this.#dropTcp(); reject(e); });
      // A receiver that closes its end: connect again for the next alert.
      socket.on('close', () => {
        if (this.#tcp === socket) this.#dropTcp();
        reject(new Error('connection closed'));
      });
      socket.on('data', () => undefined);
    });
  }

  #dropTcp(): void {
    this.#tcp?.destroy();
    this.#tcp = undefined;
    this.#tcpReady = undefined;
  }
}
