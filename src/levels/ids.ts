/**
 * The ids of the level modules `index.ts` registers, in its order: the light
 * half of the registry, for what has to know the levels without loading their
 * drivers — the API's schemas, the guard rules' `level`, the CLI's `--level`
 * choices (a CLI command starts without loading any level). `index.ts` refuses
 * to load when its modules and this list differ.
 */
export const LEVEL_IDS = ['env', 'os', 'vm', 'emu'] as const;
export type Level = (typeof LEVEL_IDS)[number];

export const isLevel = (id: string): id is Level => (LEVEL_IDS as readonly string[]).includes(id);
