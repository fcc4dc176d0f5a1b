/** The `vm` and `emu` level drivers (QEMU): see `driver.ts`. */
export { EmuDriver, VmDriver, type QemuDriverOptions } from './driver.js';
