import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERRORS, StrataError } from '../src/core/errors.js';

test('docs/errors.md lists every error code with its HTTP status, and nothing else', () => {
  const doc = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');
  const documented = new Map([...doc.matchAll(/^\| `(STRATA_ERR_[A-Z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1]!, Number(m[2])]));
  for (const [code, e] of Object.entries(ERRORS)) {
    assert.equal(documented.get(code), e.status, `${code} documented with status ${e.status} (run node scripts/errors-doc.mjs)`);
  }
  assert.equal(documented.size, Object.keys(ERRORS).length, 'docs/errors.md has codes that src/core/errors.ts does not');
});

test('StrataError carries its code, status and details into the API body', () => {
  const e = new StrataError('STRATA_ERR_QUOTA_EXCEEDED', 'too much', { resource: 'vcpus' });
  assert.equal(e.status, 422);
  assert.deepEqual(e.toJSON(), { error: { code: 'STRATA_ERR_QUOTA_EXCEEDED', message: 'too much', details: { resource: 'vcpus' } } });
});
