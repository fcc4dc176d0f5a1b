/**
 * The event bus behind `GET /v1/events`: lifecycle, operation, audit and alert
 * events, each tagged with the tenant it belongs to so the stream can show every
 * caller only what it may see. In-process and synchronous; subscribers must not
 * throw (a throwing subscriber is dropped, never the publisher).
 */
export const EVENT_CATEGORIES = ['lifecycle', 'operation', 'audit', 'alert'] as const;
export type EventCategory = (typeof EVENT_CATEGORIES)[number];

export interface StrataEvent {
  /** Monotonic per daemon run; SSE `id:`. */
  seq: number;
  time: string;
  category: EventCategory;
  /** e.g. "instance.state", "operation.succeeded", "audit.appended". */
  type: string;
  tenantId: string | null;
  data: Record<string, unknown>;
}

export type EventListener = (e: StrataEvent) => void;

export class EventBus {
  #seq = 0;
  readonly #listeners = new Set<EventListener>();

  publish(category: EventCategory, type: string, tenantId: string | null, data: Record<string, unknown>): StrataEvent {
    const event: StrataEvent = { seq: ++this.#seq, time: new Date().toISOString(), category, type, tenantId, data };
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch {
        this.#listeners.delete(listener);
      }
    }
    return event;
  }

  subscribe(listener: EventListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  get listenerCount(): number {
    return this.#listeners.size;
  }
}
