/** The `vm` and `emu` level drivers (QEMU): see `driver.ts`. */
export { EmuDriver, NETWORK_DEFAULTS, VmDriver, type QemuDriverOptions } from './driver.js';
