/**
 * The env level as a module: tenant JavaScript in V8 isolates (`driver.ts`).
 * The guard sees its isolates' boundary (`interceptor.ts`) and baselines each
 * instance's deployed handler. Isolates share host processes: no CPU or
 * network lever of their own.
 */
import { join } from 'node:path';
import type { LevelDriver } from '../driver.js';
import type { InstanceLevers, LevelModule } from '../module.js';
import { checkHandlerSource, parseInstanceConfig } from './config.js';
import { EnvDriver } from './driver.js';
import { IsolateInterceptor } from './interceptor.js';

/**
 * The deployed handler (`code.js` in the instance's directory), kept as
 * known-good copies: the isolate runs the code the driver holds in memory, so
 * recovery puts back the file a restart would load.
 */
function envLevers(driver: EnvDriver): InstanceLevers {
  const none = (what: string) => async (): Promise<never> => { throw new Error(`the env level has no lever to ${what} one isolate`); };
  return {
    tree: (i) => ({ root: driver.instanceDir(i.id), include: ['/code.js'], files: ['code.js'], keepCopies: true }),
    setCpu: none('throttle'),
    cpu: async () => null,
    setNetwork: none('cut the network of'),
    network: async () => null,
    snapshotsMemory: false,
  };
}

export const envLevel: LevelModule<EnvDriver> = {
  id: 'env',
  driver: (ctx) => new EnvDriver({ stateDir: join(ctx.dataDir, 'env') }),
  owns: (driver: LevelDriver): driver is EnvDriver => driver instanceof EnvDriver,
  validate: (input) => {
    checkHandlerSource(input.source, parseInstanceConfig(input.config).code);
  },
  levers: envLevers,
  interceptors: { interceptors: (drivers) => drivers.map((d) => new IsolateInterceptor(d, `${d.id}:boundary`)) },
};
