/**
 * Events per second through the guard's pool and evaluator with the default
 * ruleset: a realistic mix (process execs, file writes, outbound connects,
 * isolate limit hits, gateway rejects; ~1 % of them alerting) from 200
 * instances, ingested in bursts as interceptors deliver them, evaluated by the
 * guard's own drain loop. Every event has distinct fields, so pool aggregation
 * does not flatter the figure; drops are counted and must be 0.
 *
 * Anchor: Falco's published figure of about 5,000 events/s at 17 % CPU of one
 * core (falco.org performance blog) — not measured here; Falco is not installed.
 *
 * Options: --events=N (default 1,000,000), --burst=N (events per ingest burst, default 1,000),
 * --hanging-output=1: every alert also goes to an alert output, a webhook whose
 * receiver (on loopback) takes each request and never answers — compare the
 * figure with a run without it: the guard does not wait for its outputs.
 */
import { performance } from 'node:perf_hooks';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { EventBus } from '../src/core/events.js';
import type { ActuatorTarget } from '../src/guard/actuator.js';
import type { GuardEvent } from '../src/core/guard-event.js';
import { Guard } from '../src/guard/guard.js';
import { loadDefaultRuleset } from '../src/guard/rules.js';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { AlertDispatcher } from '../src/guard/outputs/dispatcher.js';
import { intOption, type BenchOptions, type BenchResult } from './harness.js';

const ANCHOR_EVENTS_PER_S = 5000;

/**
 * Distinct events in the mix. Each ingest is a fresh event object (as an
 * interceptor makes one per observation) over one of these field sets; a set
 * recurs only every 20,000 events — 20 s of event time — so far outside the
 * pool's 1 s aggregation window.
 */
const TEMPLATES = 20_000;

const noopTarget: ActuatorTarget = { alert() {}, async freeze() {}, async resume() {}, async stop() {}, async snapshot() {} };

/** A webhook output whose receiver never answers; `close` ends it all. */
async function hangingOutput(): Promise<{ dispatcher: AlertDispatcher; id: string; close(): Promise<void> }> {
  const server: Server = createServer(() => { /* never answers */ });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const dispatcher = new AlertDispatcher({ fileRoot: tmpdir() });
  const id = 'out_hanging';
  dispatcher.set([{
    id, tenantId: null, name: 'hanging', secret: 'whsec_bench', filter: { minPriority: null, rules: null },
    config: { type: 'webhook', url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, timeoutMs: 60_000, retries: 5, headers: {} },
  }]);
  return {
    dispatcher, id,
    close: async () => {
      await dispatcher.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** The i-th event of the mix; one in a hundred is a shell in a web instance or an odd outbound connection. */
function mixEvent(i: number, time: number): GuardEvent {
  const instanceId = `i${i % 200}`;
  const base = { time, tenantId: `t${i % 20}`, instanceId, level: 'os' as const };
  switch (i % 100) {
    case 0: return { ...base, kind: 'process.exec', fields: { 'proc.name': 'sh', 'proc.pname': 'php-fpm', 'proc.cmdline': `sh -c id ${i}`, 'instance.role': 'web' } };
    case 50: return { ...base, kind: 'net.connect', fields: { 'net.direction': 'out', 'net.dip': '10.9.8.7', 'net.dport': 6667, 'net.sport': i } };
    default:
      switch (i % 5) {
        case 0: return { ...base, kind: 'process.exec', fields: { 'proc.name': 'node', 'proc.pname': 'node', 'proc.pid': i, 'instance.role': 'web' } };
        case 1: return { ...base, kind: 'file.write', fields: { 'file.path': `/var/www/cache/${i}.html`, 'file.op': 'write' } };
        case 2: return { ...base, kind: 'net.connect', fields: { 'net.direction': 'out', 'net.dip': '10.0.0.2', 'net.dport': 443, 'net.sport': i } };
        case 3: return { ...base, level: 'env', kind: 'isolate.limit', fields: { 'isolate.limit': 'wall', 'isolate.call': i } };
        default: return { ...base, instanceId: null, level: 'gateway', kind: 'gateway.reject', fields: { 'gateway.reason': 'smuggling', 'client.ip': `192.0.2.${i % 250}`, 'req.id': i } };
      }
  }
}

export default async function guardThroughput(opts: BenchOptions): Promise<BenchResult> {
  const total = intOption(opts, 'events', 1_000_000);
  const burst = intOption(opts, 'burst', 1000);
  const audit = { n: 0, append() { return { index: this.n++ }; } };
  const output = opts.options['hanging-output'] ? await hangingOutput() : null;
  const target: ActuatorTarget = output ? { ...noopTarget, alert: (a) => output.dispatcher.deliver(a) } : noopTarget;
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit, events: new EventBus(), escalateAfter: Number.MAX_SAFE_INTEGER });
  await guard.start();
  const t0 = Date.now();
  const templates = Array.from({ length: TEMPLATES }, (_, i) => mixEvent(i, 0));
  const start = performance.now();
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < total; i += burst) {
    for (let j = i; j < Math.min(total, i + burst); j++) {
      const t = templates[j % TEMPLATES]!;
      guard.ingest({ time: t0 + j, tenantId: t.tenantId, instanceId: t.instanceId, level: t.level, kind: t.kind, fields: t.fields });
    }
    await yieldToEventLoop();
  }
  await guard.drained();
  const seconds = (performance.now() - start) / 1000;
  const cpu = process.cpuUsage(cpuStart);
  const stats = guard.stats();
  await guard.stop();
  const outputStats = output?.dispatcher.stats(output.id) ?? null;
  await output?.close();
  const perSecond = total / seconds;
  const cpuPercent = ((cpu.user + cpu.system) / 1e6 / seconds) * 100;
  return {
    metric: 'events per second through pool + evaluator (default rules), 0 dropped',
    unit: 'events/s',
    value: perSecond,
    anchor: 'Falco ~5k events/s (published)',
    anchor_value: ANCHOR_EVENTS_PER_S,
    summary: [
      `${total} events in ${seconds.toFixed(2)} s: ${Math.round(perSecond)} events/s at ${cpuPercent.toFixed(0)} % of one core`,
      `evaluated ${stats.evaluated}, aggregated ${stats.aggregated}, dropped ${stats.dropped}, alerts ${stats.alerts}`,
      ...(outputStats ? [`hanging webhook output: delivered ${outputStats.delivered}, queued ${outputStats.queued}, dropped ${outputStats.dropped} (its queue full; the guard never waited)`] : []),
    ],
    extra: { events: total, dropped: stats.dropped, aggregated: stats.aggregated, evaluated: stats.evaluated, alerts: stats.alerts, cpu_percent: Math.round(cpuPercent), ...(outputStats ? { output_dropped: outputStats.dropped, output_queued: outputStats.queued } : {}) },
  };
}
