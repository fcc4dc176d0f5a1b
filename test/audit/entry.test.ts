import { test } from 'node:test';
import assert from 'node:assert/strict';
import { canonicalJson } from '../../src/audit/entry.js';
import { signTreeHead, treeHeadBytes, verifyTreeHead } from '../../src/audit/head.js';
import { generateKeyPairSync } from 'node:crypto';

test('canonical JSON: keys sorted recursively, no whitespace, JSON.stringify semantics otherwise', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [3, { y: 1, x: 2 }], c: 'é\n"' } }), '{"a":{"c":"é\\n\\"","d":[3,{"x":2,"y":1}]},"b":1}');
  assert.equal(canonicalJson({ z: undefined, f: () => 1, a: null }), '{"a":null}');
  assert.equal(canonicalJson([undefined, Number.NaN, -0, 1e21, 0.1]), '[null,null,0,1e+21,0.1]');
  assert.equal(canonicalJson({ when: new Date('2024-01-02T03:04:05.000Z') }), '{"when":"2024-01-02T03:04:05.000Z"}');
  // UTF-16 code unit order, as RFC 8785 sorts: "\u20ac" (U+20AC) before "\ud83d\ude00" (U+1F600), capitals before lower case.
  assert.equal(canonicalJson({ '😀': 1, '€': 2, b: 3, B: 4 }), '{"B":4,"b":3,"€":2,"😀":1}');
  assert.throws(() => canonicalJson({ n: 1n }), TypeError);
  assert.throws(() => canonicalJson(undefined), TypeError);
});

test('canonical JSON survives a parse round trip byte for byte', () => {
  const value = { details: { list: [1.5, 'two', { k: true }], empty: {} }, actor: { userId: null, name: 'a', role: 'r' } };
  const once = canonicalJson(value);
  assert.equal(canonicalJson(JSON.parse(once)), once);
});

test('tree heads: fixed encoding, signature covers every field', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const head = signTreeHead(privateKey, { treeSize: 42, rootHash: 'ab'.repeat(32), timestamp: '2024-05-06T07:08:09.123Z' });
  assert.equal(treeHeadBytes(head).toString(), `strata-audit-tree-head/v1\n42\n${'ab'.repeat(32)}\n2024-05-06T07:08:09.123Z\n`);
  assert.ok(verifyTreeHead(publicKey, head));
  assert.ok(!verifyTreeHead(publicKey, { ...head, treeSize: 43 }));
  assert.ok(!verifyTreeHead(publicKey, { ...head, rootHash: 'ac' + 'ab'.repeat(31) }));
  assert.ok(!verifyTreeHead(publicKey, { ...head, timestamp: '2024-05-06T07:08:09.124Z' }));
  assert.ok(!verifyTreeHead(publicKey, { ...head, timestamp: '2024-05-06T07:08:09.123Z\n' }), 'no field may smuggle a newline');
  assert.ok(!verifyTreeHead(publicKey, { ...head, signature: 'AAAA' }));
  assert.ok(!verifyTreeHead(generateKeyPairSync('ed25519').publicKey, head), 'another key');
});
