/**
 * What the guest kernel rewrites in its own text (jump-label flips) is told
 * apart from what a rootkit writes: on a synthetic text with NOP sites, a flip
 * to a jump inside the text, back, or caught half-way (int3) is explained; a
 * jump out of the text, a call, a NOP overwritten by anything else, or plain
 * bytes are not.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyTextChange } from '../../../src/levels/vm/guard/kernel-patches.js';

const SIZE = 8192;
const NOP5 = [0x0f, 0x1f, 0x44, 0x00, 0x00];

/** A text of int3 padding with 5-byte NOP sites at 100 and 4094 (across the page boundary) and 2-byte ones at 10 and 300. */
function text(): Buffer {
  const t = Buffer.alloc(SIZE, 0xcc);
  t.set(NOP5, 100);
  t.set(NOP5, 4094);
  t.set([0x66, 0x90], 300);
  t.set([0x66, 0x90], 10);
  return t;
}

/** `e9 rel32` at `at` landing on `target` (an offset into the text, or outside it). */
function jmp32(buf: Buffer, at: number, target: number, opcode = 0xe9): Buffer {
  buf[at] = opcode;
  buf.writeInt32LE(target - (at + 5), at + 1);
  return buf;
}

test('static-key flips the kernel makes are explained, both ways and across a page boundary', () => {
  const before = text();
  const after = jmp32(jmp32(text(), 100, 2000), 4094, 7000);
  after[300] = 0xeb; after.writeInt8(40, 301);
  assert.deepEqual(classifyTextChange(before, after), { patchedSites: 3, unexplained: [] });
  assert.deepEqual(classifyTextChange(after, before), { patchedSites: 3, unexplained: [] }, 'and back to the NOPs');
});

test('a site caught in the middle of the kernel\'s int3-guarded patching is explained', () => {
  const half = text();
  half[100] = 0xcc; // int3 first, the tail still the NOP's
  assert.deepEqual(classifyTextChange(text(), half), { patchedSites: 1, unexplained: [] });
  const tail = jmp32(text(), 100, 2000);
  tail[100] = 0xcc; // the jump's tail written, its opcode not yet
  assert.equal(classifyTextChange(text(), tail).unexplained.length, 0);
});

test('a rootkit\'s writes are not explained', () => {
  const cases: Array<[string, Buffer]> = [
    ['a jump out of the text (an inline hook into module memory)', jmp32(text(), 100, SIZE + 0x100000)],
    ['a jump backwards out of the text', jmp32(text(), 100, -4096)],
    ['a call instead of a jump', jmp32(text(), 100, 2000, 0xe8)],
    ['other bytes over a NOP site', Buffer.from(text()).fill(0x90, 100, 105)],
    ['bytes outside any site', Buffer.from(text()).fill(0x90, 1000, 1008)],
    ['a short jump out of the text', (() => { const t = text(); t[10] = 0xeb; t.writeInt8(-128, 11); return t; })()],
  ];
  for (const [what, after] of cases) {
    const change = classifyTextChange(text(), after);
    assert.ok(change.unexplained.length > 0, `${what}: ${JSON.stringify(change)}`);
  }
  // A jump retargeted (a site's target is fixed when the kernel is built) is not a flip.
  assert.ok(classifyTextChange(jmp32(text(), 100, 2000), jmp32(text(), 100, 3000)).unexplained.length > 0);
  // Padding (int3) is never a site half-way through its patching: a short jump written into it is not explained.
  const padded = text(); padded[1001] = 0xeb; padded[1002] = 0x10;
  assert.ok(classifyTextChange(text(), padded).unexplained.length > 0);
  // A jump that lands inside the text but was never a NOP site: the bytes before it were padding, so it is not a flip.
  assert.ok(classifyTextChange(text(), jmp32(text(), 1000, 2000)).unexplained.length > 0);
});
