/** The env level: tenant JavaScript in V8 isolates inside sandboxed isolate-host processes. */
export { EnvDriver } from './driver.js';
export type { EnvDriverOptions, EnvInstanceConfig } from './config.js';
export type { HostCallEvent } from './host-calls.js';
export type { EnvRequest, EnvResponse } from './listener.js';
