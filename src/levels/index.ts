/**
 * The level drivers the product runs with. `strata up` registers exactly these.
 * Each level issue (env, os, vm, emu) adds its driver to this list — and only here.
 */
import type { LevelDriver } from './driver.js';

export function productDrivers(): LevelDriver[] {
  return [];
}
