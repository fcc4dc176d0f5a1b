/**
 * The isolate-boundary interceptor (`env` level): every call tenant code makes
 * across its isolate's boundary (`isolate.call`: kv.*, fetch, console, timers,
 * crypto), every call the boundary refuses (`isolate.denied`: the call, with
 * `call.url`, `call.host`, `call.reason` — a fetch outside the allowlist, a call
 * no runtime makes), every resource limit it hits (`isolate.limit`: cpu, memory,
 * wall, timers, kv) and every isolate-host crash under it (`isolate.crash`).
 *
 * The env driver reports these from its supervisor through one observer hook;
 * this interceptor only buffers them (EventBatch), so the boundary never
 * waits for the guard, and never sees it: the hook lives on the host side.
 */
import type { FieldValue, GuardEvent } from '../../core/guard-event.js';
import type { Emit, Interceptor } from '../../core/interceptor.js';
import { EventBatch } from '../../core/event-batch.js';

/** One boundary observation, as the env driver reports it (HostCallEvent). */
export interface BoundaryEvent {
  time: number;
  tenantId: string;
  instanceId: string;
  kind: string;
  fields: Record<string, unknown>;
}

/** What the interceptor attaches to: the env driver's `observe`. */
export interface BoundarySource {
  observe(observer: ((event: BoundaryEvent) => void) | null): void;
}

export class IsolateInterceptor implements Interceptor {
  readonly id: string;
  #batch: EventBatch | undefined;

  constructor(private readonly source: BoundarySource, id = 'env:boundary') {
    this.id = id;
  }

  async start(emit: Emit): Promise<void> {
    const batch = (this.#batch = new EventBatch(emit));
    this.source.observe((e) => batch.push(toGuardEvent(e)));
  }

  async stop(): Promise<void> {
    this.source.observe(null);
    this.#batch?.flush();
    this.#batch = undefined;
  }
}

/** Maps a boundary observation onto the guard's one event schema. */
export function toGuardEvent(e: BoundaryEvent): GuardEvent {
  const base = { time: e.time, tenantId: e.tenantId, instanceId: e.instanceId, level: 'env' as const };
  if (e.kind === 'isolate.limit') {
    return { ...base, kind: 'isolate.limit', priority: 'warning', fields: { 'isolate.limit': String(e.fields.limit ?? 'unknown'), ...flat(e.fields, 'isolate.', ['limit']) } };
  }
  if (e.kind === 'isolate.crash') return { ...base, kind: 'isolate.crash', priority: 'error', fields: flat(e.fields, 'isolate.') };
  if (e.kind === 'isolate.denied') {
    return { ...base, kind: 'isolate.denied', priority: 'warning', fields: { 'isolate.denied': String(e.fields.call ?? 'unknown'), ...flat(e.fields, 'call.', ['call']) } };
  }
  return { ...base, kind: 'isolate.call', priority: 'info', fields: { 'isolate.call': e.kind, ...flat(e.fields, 'call.') } };
}

/** Primitive fields only, prefixed: the event schema is flat, and bodies or values never travel. */
function flat(fields: Record<string, unknown>, prefix: string, skip: string[] = []): Record<string, FieldValue> {
  const out: Record<string, FieldValue> = {};
  for (const [k, v] of Object.entries(fields)) {
    if (skip.includes(k)) continue;
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[prefix + k] = v;
  }
  return out;
}
