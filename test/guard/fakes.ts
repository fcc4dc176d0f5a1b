/** Test doubles for the guard: an actuator target that records calls, an audit sink in memory, events. */
import type { AuditEntryInput } from '../../src/audit/log.js';
import { EventBus, type StrataEvent } from '../../src/core/events.js';
import type { ActuatorTarget, Alert, AuditSink, RecoverySubject } from '../../src/guard/actuator.js';
import type { GuardEvent } from '../../src/core/guard-event.js';

export class FakeTarget implements ActuatorTarget {
  readonly alerts: Alert[] = [];
  readonly calls: string[] = [];
  /** Actions that throw, e.g. 'freeze'. */
  readonly failing = new Set<string>();
  alert(a: Alert): void { this.alerts.push(a); }
  async freeze(id: string): Promise<void> { this.#call('freeze', id); }
  async resume(id: string): Promise<void> { this.#call('resume', id); }
  async stop(id: string): Promise<void> { this.#call('stop', id); }
  async snapshot(id: string): Promise<void> { this.#call('snapshot', id); }
  async throttle(id: string): Promise<void> { this.#call('throttle', id); }
  async unthrottle(id: string): Promise<void> { this.#call('unthrottle', id); }
  async cut(id: string): Promise<void> { this.#call('cut', id); }
  async reconnect(id: string): Promise<void> { this.#call('reconnect', id); }
  async recover(s: RecoverySubject): Promise<Record<string, unknown>> {
    this.#call('recover', s.instanceId ?? s.scope ?? '?');
    return { recovered: s.instanceId ?? s.scope, evidence: s.auditIndex };
  }
  #call(action: string, id: string): void {
    this.calls.push(`${action} ${id}`);
    if (this.failing.has(action)) throw new Error(`${action} failed`);
  }
}

export class MemoryAudit implements AuditSink {
  readonly entries: AuditEntryInput[] = [];
  append(input: AuditEntryInput): { index: number } { this.entries.push(input); return { index: this.entries.length - 1 }; }
}

export function recordingBus(): { bus: EventBus; published: StrataEvent[] } {
  const bus = new EventBus();
  const published: StrataEvent[] = [];
  bus.subscribe((e) => published.push(e));
  return { bus, published };
}

export const event = (kind: string, fields: GuardEvent['fields'] = {}, more: Partial<GuardEvent> = {}): GuardEvent => ({
  time: 1_700_000_000_000, tenantId: 't1', instanceId: 'i1', level: 'os', kind, fields, ...more,
});
