/**
 * A QMP client of our own: the QEMU Machine Protocol is JSON lines on a Unix
 * socket. On connect the server greets (`{"QMP": {...}}`); the client must send
 * `qmp_capabilities` before any other command. Every command carries an `id`
 * that its answer (`{"return"}` or `{"error": {"class", "desc"}}`) echoes, so
 * several commands may be in flight; lines with `"event"` are asynchronous
 * events (STOP, RESUME, SHUTDOWN, MIGRATION …) delivered to listeners.
 *
 * QEMU accepts one QMP client per socket at a time, so a driver keeps one
 * client per running VM. Every wait has a timeout; failures are typed:
 * `QmpCommandError` (QEMU refused the command), `QmpTimeoutError`,
 * `QmpClosedError` (the socket went away, e.g. QEMU exited).
 */
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { StrataError } from '../../core/errors.js';

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** QEMU answered a command with an error. `qmpClass` is QEMU's class, e.g. "GenericError". */
export class QmpCommandError extends StrataError {
  constructor(readonly command: string, readonly qmpClass: string, readonly desc: string) {
    super('STRATA_ERR_DRIVER', `QMP ${command} failed: ${desc}`, { command, qmpClass });
    this.name = 'QmpCommandError';
  }
}

/** No answer (or no event, or no connection) within the time allowed. */
export class QmpTimeoutError extends StrataError {
  constructor(what: string, timeoutMs: number) {
    super('STRATA_ERR_DRIVER', `QMP: ${what} timed out after ${timeoutMs} ms`, { what, timeoutMs });
    this.name = 'QmpTimeoutError';
  }
}

/** The connection closed (or never opened) while something still waited on it. */
export class QmpClosedError extends StrataError {
  constructor(reason: string) {
    super('STRATA_ERR_DRIVER', `QMP connection closed: ${reason}`, { reason });
    this.name = 'QmpClosedError';
  }
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

export interface QmpConnectOptions {
  /** Keep retrying a missing or refusing socket until this much time has passed (QEMU still starting). Default 0. */
  retryForMs?: number;
  /** Time allowed for the greeting and capabilities negotiation. Default 5 s. */
  timeoutMs?: number;
}

/**
 * Every live client by the socket path it connected to, and observers of every
 * client's events: how the guard's QMP interceptor watches all VMs without a
 * second monitor connection (QEMU serves one client per QMP socket).
 */
const liveClients = new Map<string, QmpClient>();
const eventTaps = new Set<(socketPath: string, event: QmpEvent) => void>();

/** Calls `tap` with every event of every client, and its socket path, until the returned function is called. */
export function tapQmpEvents(tap: (socketPath: string, event: QmpEvent) => void): () => void {
  eventTaps.add(tap);
  return () => { eventTaps.delete(tap); };
}

/** The open client connected to `socketPath`, if any. */
export const liveQmpClient = (socketPath: string): QmpClient | undefined => liveClients.get(socketPath);

/** Socket paths of every open client. */
export const liveQmpSockets = (): string[] => [...liveClients.keys()];

/** Default time a command may take before `execute` gives up. */
const DEFAULT_COMMAND_TIMEOUT_MS = 10_000;

export class QmpClient {
  readonly #socket: Socket;
  readonly #pending = new Map<number, Pending>();
  readonly #listeners = new Set<(event: QmpEvent) => void>();
  #nextId = 1;
  #buffer = '';
  #closedReason: string | null = null;
  #greeting: Record<string, unknown> | null = null;
  #path = '';
  #onGreeting: ((greeting: Record<string, unknown>) => void) | null = null;
  /** Resolves when the socket closes, for whoever waits for QEMU to go away. */
  readonly closed: Promise<void>;

  private constructor(socket: Socket) {
    this.#socket = socket;
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.#onData(chunk));
    this.closed = new Promise((resolve) => {
      socket.once('close', () => {
        this.#fail(this.#closedReason ?? 'socket closed by peer');
        resolve();
      });
    });
    socket.on('error', (e) => { this.#closedReason ??= e.message; });
  }

  /** Connects to `path`, reads the greeting and negotiates capabilities. */
  static async connect(path: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const deadline = Date.now() + (opts.retryForMs ?? 0);
    for (;;) {
      try {
        const socket = await openSocket(path);
        const client = new QmpClient(socket);
        try {
          await client.#negotiate(opts.timeoutMs ?? 5_000);
        } catch (e) {
          client.close();
          throw e;
        }
        client.#path = path;
        liveClients.set(path, client);
        void client.closed.then(() => { if (liveClients.get(path) === client) liveClients.delete(path); });
        return client;
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const retriable = code === 'ENOENT' || code === 'ECONNREFUSED' || e instanceof QmpClosedError;
        if (!retriable || Date.now() >= deadline) {
          throw e instanceof StrataError ? e : new QmpClosedError(`cannot connect to ${path}: ${(e as Error).message}`);
        }
        await sleep(20);
      }
    }
  }

  /** The server's greeting (`QMP.version`, `QMP.capabilities`). */
  get greeting(): Record<string, unknown> {
    return this.#greeting ?? {};
  }

  get isClosed(): boolean {
    return this.#closedReason !== null || this.#socket.destroyed;
  }

  /** Runs one command; resolves with its `return` value. */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs = DEFAULT_COMMAND_TIMEOUT_MS): Promise<T> {
    if (this.isClosed) return Promise.reject(new QmpClosedError(this.#closedReason ?? 'closed'));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      this.#socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}), id })}\n`);
    });
  }

  /** Calls `listener` for every event until the returned function is called. */
  onEvent(listener: (event: QmpEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The next event named `name` (that `match` accepts), or a timeout. */
  waitForEvent(name: string, timeoutMs: number, match: (event: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        off();
        fn();
      };
      const off = this.onEvent((event) => {
        if (event.event === name && match(event)) settle(() => resolve(event));
      });
      const timer = setTimeout(() => settle(() => reject(new QmpTimeoutError(`event ${name}`, timeoutMs))), timeoutMs);
      void this.closed.then(() => settle(() => reject(new QmpClosedError(this.#closedReason ?? 'closed'))));
    });
  }

  close(): void {
    this.#closedReason ??= 'closed by client';
    this.#socket.destroy();
  }

  async #negotiate(timeoutMs: number): Promise<void> {
    const greeting = await new Promise<Record<string, unknown>>((resolve, reject) => {
      if (this.#greeting) return resolve(this.#greeting);
      const timer = setTimeout(() => reject(new QmpTimeoutError('greeting', timeoutMs)), timeoutMs);
      this.#onGreeting = (g) => { clearTimeout(timer); resolve(g); };
      void this.closed.then(() => { clearTimeout(timer); reject(new QmpClosedError(this.#closedReason ?? 'closed before the greeting')); });
    });
    if (!('QMP' in greeting)) throw new QmpClosedError('the peer did not greet as a QMP server');
    await this.execute('qmp_capabilities', undefined, timeoutMs);
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let newline: number;
    while ((newline = this.#buffer.indexOf('\n')) >= 0) {
      const line = this.#buffer.slice(0, newline).trim();
      this.#buffer = this.#buffer.slice(newline + 1);
      if (line) this.#onMessage(line);
    }
  }

  #onMessage(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      this.#closedReason = `unparseable QMP line: ${line.slice(0, 200)}`;
      this.#socket.destroy();
      return;
    }
    if ('QMP' in message) {
      this.#greeting = message;
      this.#onGreeting?.(message);
      return;
    }
    if (typeof message.event === 'string') {
      for (const listener of [...this.#listeners]) listener(message as unknown as QmpEvent);
      for (const tap of eventTaps) {
        try { tap(this.#path, message as unknown as QmpEvent); } catch { /* an observer never disturbs the driver */ }
      }
      return;
    }
    const pending = typeof message.id === 'number' ? this.#pending.get(message.id) : undefined;
    if (!pending) return; // an answer to a command that already timed out
    this.#pending.delete(message.id as number);
    clearTimeout(pending.timer);
    const error = message.error as { class?: string; desc?: string } | undefined;
    if (error) pending.reject(new QmpCommandError(pending.command, error.class ?? 'GenericError', error.desc ?? 'unknown error'));
    else pending.resolve(message.return);
  }

  #fail(reason: string): void {
    this.#closedReason ??= reason;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      pending.reject(new QmpClosedError(reason));
      this.#pending.delete(id);
    }
  }
}

function openSocket(path: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    socket.once('connect', () => { socket.removeListener('error', reject); resolve(socket); });
    socket.once('error', reject);
  });
}
