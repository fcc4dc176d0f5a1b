/**
 * Every call tenant code makes across its isolate's boundary passes through
 * here, in the supervisor: one place that sees them all and one hook
 * (`onHostCall`) that reports each one — the guard's interceptor for the env
 * level plugs in there.
 *
 * Calls that need an answer (`kv.*`, `fetch`) are served here; calls that need
 * none (`console`, `crypto.random`, `timer.set`) are handled in the host and
 * arrive here in batches, to be logged and reported. The instance a call
 * belongs to is the one the supervisor placed on that host — never what the
 * host claims beyond that — and its tenant decides which KV file is touched.
 */
import { KvError, KvQuotaError, type KvNamespace, type KvStores } from './kv.js';
import { outboundFetch, OutboundError, OutboundRefused, type OutboundPolicy } from './outbound.js';
import type { InstanceLog } from './instance-log.js';

/** One boundary call, as the guard sees it. Fields never carry KV values or bodies. */
export interface HostCallEvent {
  /** Milliseconds since the epoch. */
  time: number;
  tenantId: string;
  instanceId: string;
  /**
   * A call: kv.get, kv.put, kv.delete, kv.list, fetch, console, crypto.random, timer.set.
   * A refusal: `isolate.denied` (`call`: fetch outside the allowlist, or a call the boundary does not know).
   * A limit hit: `isolate.limit` (`limit`: cpu, memory — the isolate was reset —, timers, kv quota; the
   * driver adds wall). A host crash under a request: `isolate.crash` (from the driver).
   */
  kind: string;
  fields: Record<string, unknown>;
}

/** What the supervisor knows about the instance a call comes from. */
export interface CallerContext {
  tenantId: string;
  instanceId: string;
  kv: KvNamespace;
  outbound: readonly string[];
  log: InstanceLog;
}

export interface CallAnswer {
  ok: boolean;
  value: unknown;
  body?: Uint8Array;
}

const str = (v: unknown): string => (typeof v === 'string' ? v : '');

export class HostCalls {
  constructor(
    private readonly kv: KvStores,
    private readonly policy: OutboundPolicy,
    private readonly hook: (event: HostCallEvent) => void,
  ) {}

  #report(ctx: CallerContext, kind: string, fields: Record<string, unknown>, time = Date.now()): void {
    try {
      this.hook({ time, tenantId: ctx.tenantId, instanceId: ctx.instanceId, kind, fields });
    } catch {
      // An observer's failure must never change what tenant code sees.
    }
  }

  /** Serves one call that needs an answer. Errors tenant code caused come back as `ok: false` with a message for it. */
  async call(ctx: CallerContext, kind: string, fields: Record<string, unknown>, body: Uint8Array | null): Promise<CallAnswer> {
    const key = str(fields.key);
    try {
      switch (kind) {
        case 'kv.get':
          this.#report(ctx, kind, { namespace: ctx.kv.namespace, key });
          return { ok: true, value: this.kv.get(ctx.kv, key) };
        case 'kv.put': {
          const value = str(fields.value);
          this.#report(ctx, kind, { namespace: ctx.kv.namespace, key, bytes: Buffer.byteLength(value) });
          this.kv.put(ctx.kv, key, value);
          return { ok: true, value: null };
        }
        case 'kv.delete':
          this.#report(ctx, kind, { namespace: ctx.kv.namespace, key });
          this.kv.delete(ctx.kv, key);
          return { ok: true, value: null };
        case 'kv.list': {
          const prefix = str(fields.prefix);
          this.#report(ctx, kind, { namespace: ctx.kv.namespace, prefix });
          const cursor = typeof fields.cursor === 'string' ? fields.cursor : null;
          return { ok: true, value: this.kv.list(ctx.kv, prefix, Number(fields.limit), cursor) };
        }
        case 'fetch': {
          const method = str(fields.method) || 'GET';
          const url = str(fields.url);
          const headers = Array.isArray(fields.headers)
            ? (fields.headers as unknown[]).filter((h): h is [string, string] => Array.isArray(h) && typeof h[0] === 'string' && typeof h[1] === 'string')
            : [];
          this.#report(ctx, kind, { method, url, bytes: body?.length ?? 0 });
          const res = await outboundFetch(ctx.outbound, this.policy, { method, url, headers, body });
          return { ok: true, value: { status: res.status, headers: res.headers }, body: res.body };
        }
        default:
          // The runtime makes only the calls above: anything else means tenant code reached the raw bridge.
          this.#report(ctx, 'isolate.denied', { call: kind.slice(0, 64), reason: 'unknown host call' });
          return { ok: false, value: `unknown host call ${kind}` };
      }
    } catch (e) {
      if (e instanceof KvQuotaError) this.#report(ctx, 'isolate.limit', { limit: 'kv', detail: e.message });
      if (e instanceof OutboundRefused) this.#report(ctx, 'isolate.denied', { call: kind, url: str(fields.url), host: hostOf(str(fields.url)), reason: e.message });
      if (e instanceof KvError || e instanceof OutboundError) return { ok: false, value: e.message };
      return { ok: false, value: `${kind} failed` };
    }
  }

  /** An isolate was reset for breaking its CPU or memory limit (whether in a request or in a timer). */
  limitHit(ctx: CallerContext, limit: string, detail: string): void {
    this.#report(ctx, 'isolate.limit', { limit, detail });
  }

  /** Records a batch of calls that needed no answer; console output goes to the instance's log. */
  events(ctx: CallerContext, events: ReadonlyArray<{ time: number; kind: string; fields: Record<string, unknown> }>): void {
    const lines: Array<{ time: number; source: 'console'; level: string; message: string }> = [];
    for (const e of events) {
      if (e.kind === 'console') {
        const message = str(e.fields.message);
        const level = ['log', 'info', 'warn', 'error', 'debug'].includes(str(e.fields.level)) ? str(e.fields.level) : 'log';
        lines.push({ time: e.time, source: 'console', level, message });
        this.#report(ctx, 'console', { level, bytes: message.length }, e.time);
      } else if (e.kind === 'crypto.random' || e.kind === 'timer.set') {
        this.#report(ctx, e.kind, { ...e.fields }, e.time);
      } else if (e.kind === 'limit' && e.fields.limit === 'timers') {
        this.#report(ctx, 'isolate.limit', { limit: 'timers', detail: `too many pending timers (limit ${Number(e.fields.max) || 0})` }, e.time);
      } else if (e.kind === 'limit' && e.fields.limit === 'memory') {
        this.#report(ctx, 'isolate.limit', { limit: 'memory', detail: `an ArrayBuffer was refused at the memory limit of ${Number(e.fields.max) || 0} MiB` }, e.time);
      }
    }
    ctx.log.write(lines);
  }
}

/** The host[:port] a URL names, or '' when it names none. */
function hostOf(url: string): string {
  try { return new URL(url).host; } catch { return ''; }
}
