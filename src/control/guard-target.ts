/**
 * How the guard's actuator acts on instances: through the same lifecycle
 * service as the API, as the system principal `guard`, so every reaction is
 * checked against the state machine, serialised with other work on the
 * instance, and recorded in the tenant's audit log with the rule as its reason.
 */
import type { Principal } from '../auth/policy.js';
import type { AuditLog } from '../audit/log.js';
import type { ActuatorTarget, Alert } from '../guard/actuator.js';
import type { Store } from '../store/store.js';
import type { AuditFn, InstanceService, UserAction } from './instances.js';
import type { OperationRunner } from './operations.js';

const GUARD: Principal = { userId: 'guard', name: 'guard', role: 'provider-admin', tenantId: null, tokenId: 'guard', reason: 'guard reaction' };

export class GuardTarget implements ActuatorTarget {
  constructor(
    private readonly store: Store,
    private readonly instances: InstanceService,
    private readonly operations: OperationRunner,
    private readonly audit: AuditLog,
  ) {}

  /** Alerts already reach the audit log and the event stream; webhooks come later. */
  alert(_alert: Alert): void {}

  freeze(id: string): Promise<void> {
    return this.#act(id, 'pause');
  }
  resume(id: string): Promise<void> {
    return this.#act(id, 'resume');
  }
  stop(id: string): Promise<void> {
    return this.#act(id, 'stop');
  }

  async snapshot(id: string): Promise<void> {
    const found = this.#find(id);
    if (!found) return;
    const name = `guard-${new Date().toISOString().replace(/[^0-9]/g, '').slice(0, 14)}`;
    const { operation } = this.instances.snapshot(GUARD, found.tenant, found.instance, name, this.#auditFn);
    await this.#finished(operation.id);
  }

  async #act(id: string, action: UserAction): Promise<void> {
    const found = this.#find(id);
    if (!found) return;
    const op = this.instances.act(GUARD, found.tenant, found.instance, action, { graceMs: 0 }, this.#auditFn);
    await this.#finished(op.id);
  }

  async #finished(operationId: string): Promise<void> {
    const op = await this.operations.wait(operationId, 120);
    if (op.status === 'failed') throw new Error(op.error?.message ?? 'operation failed');
  }

  #find(id: string) {
    const instance = this.store.getInstanceById(id);
    const tenant = instance ? this.store.getTenant(instance.tenantId) : null;
    return instance && tenant ? { instance, tenant } : null;
  }

  readonly #auditFn: AuditFn = (entry) => {
    this.audit.append({ actor: { userId: null, name: 'guard', role: 'system' }, result: 'ok', reason: GUARD.reason!, ...entry });
  };
}
