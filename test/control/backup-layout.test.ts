/**
 * docs/operations.md names every part of the data-dir layout the backup reads,
 * with whether it is backed up (as test/errors.test.ts keeps docs/errors.md in step).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { DATA_DIR_LAYOUT } from '../../src/control/backup/layout.js';
import { LEVEL_MODULES } from '../../src/levels/index.js';

const doc = readFileSync(new URL('../../../docs/operations.md', import.meta.url), 'utf8');
const section = doc.split(/^## /m).find((s) => s.startsWith('Data-dir layout\n')) ?? '';

test('docs/operations.md lists every path of the data-dir layout, and whether a backup holds it', () => {
  const rows = section.split('\n').filter((l) => l.startsWith('| `'));
  for (const e of [...DATA_DIR_LAYOUT, ...LEVEL_MODULES.map((m) => ({ path: m.id, backup: 'skip' }))]) {
    const row = rows.find((r) => r.split(' | ')[0]!.includes(`\`${e.path}\``));
    assert.ok(row, `${e.path} in the layout table`);
    const last = row.split(' | ').at(-1)!;
    assert.equal(/^yes/.test(last), e.backup !== 'skip', `${e.path}: backed up ${e.backup !== 'skip'}`);
  }
});
