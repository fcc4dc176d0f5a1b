/**
 * The isolate host: a child process of the daemon that runs tenant isolates and
 * nothing else. It owns no files, no network and no credentials — the
 * supervisor spawns it inside its own namespaces, cgroup and uid (see
 * `../sandbox/`) — and it talks only over fd 3, in the frames of `protocol.ts`.
 * Everything a tenant asks of the outside world (KV, fetch, logs) is forwarded
 * to the supervisor, which decides.
 *
 * It exits when the supervisor's end of fd 3 closes, so a dead daemon leaves no
 * hosts behind.
 */
import ivm from 'isolated-vm';
import { Socket } from 'node:net';
import { encodeFrame, readFrames, type HostMessage, type InvokeFailure, type SupervisorMessage } from '../protocol.js';
import { installRuntime } from './runtime.js';
import { TenantIsolate, type IsolateHostSide } from './tenant-isolate.js';

const channel = new Socket({ fd: 3, readable: true, writable: true });
const send = (message: HostMessage, body?: Uint8Array): void => { channel.write(encodeFrame(message, body)); };

/** The runtime, pre-evaluated into a V8 snapshot: a new isolate starts with it in a few ms. */
const snapshot = ivm.Isolate.createSnapshot([{ code: `globalThis.__strata_install = ${installRuntime.toString()};`, filename: 'strata:runtime' }]);
const isolates = new Map<string, TenantIsolate>();
const keyOf = (inst: string, gen: number): string => `${inst}#${gen}`;

/** Async host calls on their way to the supervisor, by host-wide call id. */
const calls = new Map<number, { isolate: TenantIsolate; epoch: number; localId: number }>();
let nextCall = 1;

/** Boundary calls that need no answer, sent in batches (and always before a response, to keep log order). */
type HostEvent = Extract<HostMessage, { t: 'events' }>['events'][number];
let events: HostEvent[] = [];
let flushTimer: NodeJS.Timeout | null = null;
const EVENT_BATCH = 256;
function flushEvents(): void {
  if (flushTimer) { clearTimeout(flushTimer); flushTimer = null; }
  if (events.length === 0) return;
  send({ t: 'events', events });
  events = [];
}

const side: IsolateHostSide = {
  forwardCall(isolate, localId, kind, fields, body) {
    const call = nextCall++;
    calls.set(call, { isolate, epoch: isolate.epoch, localId });
    flushEvents();
    send({ t: 'call', inst: isolate.inst, gen: isolate.gen, call, kind, fields }, body ?? undefined);
  },
  event(inst, kind, fields) {
    events.push({ inst, time: Date.now(), kind, fields });
    if (events.length >= EVENT_BATCH) flushEvents();
    else flushTimer ??= setTimeout(flushEvents, 20);
  },
  reset(isolate, reason: InvokeFailure, detail) {
    flushEvents();
    send({ t: 'reset', inst: isolate.inst, gen: isolate.gen, reason, detail });
  },
};

async function onMessage(m: SupervisorMessage, body: Buffer): Promise<void> {
  switch (m.t) {
    case 'load': {
      const started = performance.now();
      const isolate = new TenantIsolate(m.inst, m.gen, m.code, m.vars, m.limits, snapshot, side);
      isolates.set(keyOf(m.inst, m.gen), isolate);
      try {
        await isolate.load();
        send({ t: 'loaded', inst: m.inst, gen: m.gen, ms: performance.now() - started });
      } catch (e) {
        isolates.delete(keyOf(m.inst, m.gen));
        isolate.dispose();
        send({ t: 'load-failed', inst: m.inst, gen: m.gen, error: (e as Error).message });
      }
      return;
    }
    case 'unload': {
      isolates.get(keyOf(m.inst, m.gen))?.dispose();
      isolates.delete(keyOf(m.inst, m.gen));
      return;
    }
    case 'check':
      send({ t: 'checked', id: m.id, error: await checkModule(m.code) });
      return;
    case 'req': {
      const isolate = isolates.get(keyOf(m.inst, m.gen));
      const outcome = isolate
        ? await isolate.invoke(m.method, m.url, m.headers, body.length > 0 ? new Uint8Array(body) : null)
        : { ok: false as const, failure: 'unloaded' as const, detail: 'not loaded on this host' };
      flushEvents();
      if (outcome.ok) send({ t: 'res', id: m.id, status: outcome.status, headers: outcome.headers }, outcome.body);
      else send({ t: 'res-failed', id: m.id, failure: outcome.failure, detail: outcome.detail });
      return;
    }
    case 'reply': {
      const pending = calls.get(m.call);
      if (!pending) return;
      calls.delete(m.call);
      pending.isolate.settle(pending.epoch, pending.localId, m.ok, m.value, m.binary ? new Uint8Array(body) : null);
      return;
    }
  }
}

/** Compiles a module in a throwaway isolate: null when it is a valid, import-free module, else why not. */
async function checkModule(code: string): Promise<string | null> {
  const isolate = new ivm.Isolate({ memoryLimit: 32 });
  try {
    const module = await isolate.compileModule(code, { filename: 'file:///handler.js' });
    if (module.dependencySpecifiers.length > 0) return `imports are not available: ${module.dependencySpecifiers.join(', ')}`;
    return null;
  } catch (e) {
    return (e as Error).message;
  } finally {
    isolate.dispose();
  }
}

readFrames(channel, (message, body) => {
  onMessage(message as SupervisorMessage, body).catch((e: unknown) => {
    process.stderr.write(`isolate host: ${(e as Error).stack ?? String(e)}\n`);
  });
}, (why) => {
  process.stderr.write(`isolate host: protocol violation: ${why}\n`);
  process.exit(2);
});
channel.on('close', () => process.exit(0));
channel.on('error', () => process.exit(0));

setInterval(() => {
  const usage = [...isolates.values()].map((i) => ({ inst: i.inst, gen: i.gen, heapBytes: i.heapBytes, cpuNs: i.cpuNs }));
  send({ t: 'stats', rss: process.memoryUsage.rss(), isolates: isolates.size, usage });
}, 1000).unref();

send({ t: 'ready', pid: process.pid });
