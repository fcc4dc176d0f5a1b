/**
 * The one typed event every guard interceptor emits, whatever its source
 * (eBPF, the isolate boundary, QMP, the gateway, the file watcher). Rules
 * match on it; the pool queues it; alerts quote its fields as evidence.
 */
/** Urgency, most urgent first. The pool drains in this order; rules carry one too. */
export const PRIORITIES = ['critical', 'error', 'warning', 'notice', 'info'] as const;
export type Priority = (typeof PRIORITIES)[number];

/** Rank of a priority: 0 is the most urgent. */
export const priorityRank = (p: Priority): number => PRIORITIES.indexOf(p);

/**
 * Where an event comes from: an instance's level (a level module's id), or
 * Strata's own parts ('gateway', 'host'). Rules check it when they are loaded.
 */
export type EventLevel = string;

/** e.g. 'file.write', 'process.exec', 'net.connect', 'isolate.limit', 'gateway.reject', 'integrity.mismatch'. */
export type EventKind = string;

export type FieldValue = string | number | boolean;

export interface GuardEvent {
  /** Milliseconds since the epoch when the interceptor saw it; rule windows are measured in this clock. */
  time: number;
  tenantId: string | null;
  instanceId: string | null;
  level: EventLevel;
  kind: EventKind;
  /** The interceptor's view of urgency; decides the order in the pool. Default 'notice'. */
  priority?: Priority;
  /** Flat, dotted names as Falco spells them: 'file.path', 'proc.name', 'net.dport'. */
  fields: Record<string, FieldValue>;
}

/**
 * Reads a field by the name rules use. `kind`, `level`, `tenant.id`,
 * `instance.id` and `priority` come from the event itself; every other name is
 * looked up in `fields`. Undefined means the event does not carry it.
 */
export function fieldOf(event: GuardEvent, name: string): FieldValue | undefined {
  switch (name) {
    case 'kind': return event.kind;
    case 'level': return event.level;
    case 'tenant.id': return event.tenantId ?? undefined;
    case 'instance.id': return event.instanceId ?? undefined;
    case 'priority': return event.priority;
    default: return event.fields[name];
  }
}
