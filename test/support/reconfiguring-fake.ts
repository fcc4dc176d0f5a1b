/**
 * A FakeDriver that can reconfigure, as the os level does: a running instance
 * takes limits live, config at the next start; a stopped one everything at its
 * next start. Test double only.
 */
import type { Applied, InstanceSpec } from '../../src/levels/driver.js';
import { FakeDriver, type FakeDriverOptions } from './fake-driver.js';

export class ReconfiguringFake extends FakeDriver {
  readonly reconfigured: Array<{ spec: InstanceSpec; changed: readonly string[] }> = [];
  constructor(opts: FakeDriverOptions = {}) {
    super({ level: 'os', ...opts });
  }
  async reconfigure(spec: InstanceSpec, changed: readonly string[]): Promise<Record<string, Applied>> {
    const state = this.stateOf(spec.id);
    if (state === null) throw new Error(`no instance ${spec.id}`);
    this.seed(spec, state);
    this.reconfigured.push({ spec, changed });
    return Object.fromEntries(changed.map((f) => [f, state === 'running' && f.startsWith('limits.') ? 'live' : 'next-restart']));
  }
}
