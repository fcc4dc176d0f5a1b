/**
 * The supervisor's handle on one isolate host process: spawns it inside its
 * sandbox (cgroup, namespaces, uid, seccomp), frames messages to it over fd 3,
 * and reports what it says and when it dies.
 *
 * A host is *shared* (one of the pool) or *dedicated* to one tenant (whose code
 * kept crashing shared hosts). It is *retiring* once the supervisor started to
 * move its instances elsewhere; it then takes no new instances.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { createHostCgroup, type HostCgroup } from './sandbox/cgroup.js';
import { hostCommand, type SandboxFacilities } from './sandbox/command.js';
import { encodeFrame, readFrames, type HostMessage, type SupervisorMessage } from './protocol.js';

export interface HostProcessOptions {
  name: string;
  /** Tenant this host is dedicated to, or null for a shared host. */
  dedicatedTo: string | null;
  facilities: SandboxFacilities;
  uid: number;
  cgroupLimits: { memoryBytes: number; cpus: number; pids: number };
  onMessage: (host: HostProcess, message: HostMessage, body: Buffer) => void;
  onExit: (host: HostProcess, why: string) => void;
}

/** How long a host may take to say `ready`. */
const READY_TIMEOUT_MS = 15_000;

export class HostProcess {
  readonly name: string;
  readonly dedicatedTo: string | null;
  /** Pid of the first process of the chain (the sandbox wrapper, or node itself). */
  pid = 0;
  /** RSS the host last reported. */
  rss = 0;
  /** Requests sent to this host since it started. */
  requests = 0;
  retiring = false;
  /** Instance generations placed here ("id#gen"). */
  readonly placed = new Set<string>();
  readonly ready: Promise<void>;
  #child: ChildProcess | null = null;
  #channel: Socket | null = null;
  #cgroup: HostCgroup | null = null;
  #exited = false;
  #stderrTail = '';

  constructor(private readonly opts: HostProcessOptions) {
    this.name = opts.name;
    this.dedicatedTo = opts.dedicatedTo;
    this.ready = this.#spawn().catch((e: Error) => {
      this.#reportExit(e.message);
      throw e;
    });
    this.ready.catch(() => undefined);
  }

  get alive(): boolean {
    return !this.#exited;
  }

  send(message: SupervisorMessage, body?: Uint8Array): void {
    if (this.#exited || !this.#channel) return;
    this.#channel.write(encodeFrame(message, body));
  }

  async #spawn(): Promise<void> {
    const f = this.opts.facilities;
    if (f.cgroups) this.#cgroup = createHostCgroup(f.cgroups, `${process.pid}-${this.name}`, this.opts.cgroupLimits);
    const cmd = hostCommand(f, { uid: this.opts.uid, cgroupProcs: this.#cgroup?.procsFiles ?? [] });
    const child = spawn(cmd.command, cmd.args, { env: cmd.env, stdio: ['ignore', 'ignore', 'pipe', 'pipe'] });
    this.#child = child;
    this.pid = child.pid ?? 0;
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (s: string) => { this.#stderrTail = (this.#stderrTail + s).slice(-4096); });
    const channel = child.stdio[3] as Socket;
    this.#channel = channel;
    channel.on('error', () => undefined);
    let announce!: () => void;
    const ready = new Promise<void>((resolve) => (announce = resolve));
    readFrames(channel, (message, body) => {
      const m = message as HostMessage;
      if (m?.t === 'ready') announce();
      else this.opts.onMessage(this, m, body);
    }, (why) => this.kill(`protocol violation: ${why}`));
    const exited = new Promise<never>((_, reject) => {
      child.once('exit', (code, signal) => {
        const why = `host ${this.name} exited (${signal ?? `code ${code}`})${this.#stderrTail ? `: ${this.#stderrTail.trim().split('\n').slice(-3).join(' | ')}` : ''}`;
        this.#reportExit(why);
        reject(new Error(why));
      });
    });
    exited.catch(() => undefined);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`host ${this.name} did not start within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
    });
    try {
      await Promise.race([ready, exited, timeout]);
    } catch (e) {
      this.kill('failed to start');
      throw e;
    } finally {
      clearTimeout(timer);
    }
  }

  /** Marks the host gone (once): its cgroup is removed and the supervisor told. */
  #reportExit(why: string): void {
    if (this.#exited) return;
    this.#exited = true;
    this.#channel?.destroy();
    try { this.#child?.kill('SIGKILL'); } catch { /* already gone */ }
    this.#cgroup?.remove().catch(() => undefined);
    this.opts.onExit(this, why);
  }

  /** Memory charged to the host's cgroup, or its last reported RSS. */
  memoryBytes(): number {
    return this.#cgroup?.memoryBytes() ?? this.rss;
  }

  /** Ends the host at once (SIGKILL: it holds nothing worth a graceful end). */
  kill(_why: string): void {
    if (this.#exited) return;
    this.#channel?.destroy();
    try { this.#child?.kill('SIGKILL'); } catch { /* already gone */ }
  }

  /** Kills the host and waits until it is gone and its cgroup removed. */
  async shutdown(): Promise<void> {
    if (this.#exited) { await this.#cgroup?.remove().catch(() => undefined); return; }
    const child = this.#child;
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      this.kill('shutdown');
      await gone;
    }
    await this.#cgroup?.remove().catch(() => undefined);
  }
}
