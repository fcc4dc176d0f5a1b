/**
 * Changes a guest kernel makes to its own text while it runs, told apart from a
 * rootkit's. Linux flips static keys (jump labels) at run time — when the
 * clocksource watchdog finds the TSC unstable on a loaded host, when an
 * operator sets a sysctl such as `kernel.sched_schedstats` — and each flip
 * rewrites a 2- or 5-byte site between a NOP and a jump to elsewhere in its own
 * text (x86_64: arch/x86/kernel/jump_label.c). A difference is explained when
 * every changed byte lies in such a site that went from the NOP to a jump
 * landing inside `.text` or back, or is caught half-way through the kernel's
 * int3-guarded patching. Anything else is not: other bytes, a call, a jump
 * retargeted, or a jump out of `.text` (an inline hook into module or allocated
 * memory, which is what a rootkit writes). Without the kernel's symbols (Debian
 * ships its vmlinux stripped) the sites are recognised by shape, not read from
 * `__jump_table`: a writer with kernel privileges could still turn a NOP site
 * into a jump elsewhere in the kernel's own text.
 */

const NOP5 = Buffer.from([0x0f, 0x1f, 0x44, 0x00, 0x00]);
const NOP2 = Buffer.from([0x66, 0x90]);
const JMP32 = 0xe9;
const JMP8 = 0xeb;
const INT3 = 0xcc;

/** One jump-label site shape: its length, its NOP, its jump opcode and how to read the jump's displacement. */
interface SiteShape {
  len: number;
  nop: Buffer;
  jmp: number;
  rel(buf: Buffer, at: number): number;
}

const SHAPES: readonly SiteShape[] = [
  { len: 5, nop: NOP5, jmp: JMP32, rel: (b, at) => b.readInt32LE(at + 1) },
  { len: 2, nop: NOP2, jmp: JMP8, rel: (b, at) => b.readInt8(at + 1) },
];

type Form = 'nop' | 'jmp';

/** The complete form `buf` holds at `at` in the shape: its NOP, or its jump landing inside the text; else null. */
function formAt(buf: Buffer, at: number, shape: SiteShape): Form | null {
  if (at < 0 || at + shape.len > buf.length) return null;
  if (buf.compare(shape.nop, 0, shape.len, at, at + shape.len) === 0) return 'nop';
  return buf[at] === shape.jmp && jumpsInside(buf, at, shape) ? 'jmp' : null;
}

function jumpsInside(buf: Buffer, at: number, shape: SiteShape): boolean {
  const target = at + shape.len + shape.rel(buf, at);
  return target >= 0 && target < buf.length;
}

/**
 * Whether `mid` holds at `at` a state the kernel's patching passes through on the
 * way from or to `form` held by `whole`: the int3 first, then the tail of the old
 * instruction or of the new one (which is the other form).
 */
function midPatch(mid: Buffer, whole: Buffer, at: number, shape: SiteShape, form: Form): boolean {
  if (mid[at] !== INT3) return false;
  if (mid.compare(whole, at + 1, at + shape.len, at + 1, at + shape.len) === 0) return true;
  if (form === 'jmp') return mid.compare(shape.nop, 1, shape.len, at + 1, at + shape.len) === 0;
  return jumpsInside(mid, at, shape);
}

/** Whether the site at `at` went from one form to the other, or is caught half-way between them. */
function flipped(before: Buffer, after: Buffer, at: number, shape: SiteShape): boolean {
  const was = formAt(before, at, shape), is = formAt(after, at, shape);
  if (was && is) return was !== is;
  if (was) return midPatch(after, before, at, shape, was);
  if (is) return midPatch(before, after, at, shape, is);
  return false;
}

export interface TextChange {
  /** Sites rewritten the way the kernel rewrites its own static keys. */
  patchedSites: number;
  /** Offsets (into the text) of changed bytes no such site explains. */
  unexplained: number[];
}

/** Classifies the bytes that differ between `before` and `after` (the same text, read twice) within [from, to). */
export function classifyTextChange(before: Buffer, after: Buffer, from = 0, to = Math.min(before.length, after.length)): TextChange {
  const change: TextChange = { patchedSites: 0, unexplained: [] };
  let i = from;
  while (i < to) {
    if (before[i] === after[i]) { i++; continue; }
    const site = findSite(before, after, i);
    if (site === null) {
      change.unexplained.push(i);
      i++;
    } else {
      change.patchedSites++;
      i = site;
    }
  }
  return change;
}

/** The end of a site that covers changed byte `i` and every other changed byte in it, or null. */
function findSite(before: Buffer, after: Buffer, i: number): number | null {
  for (const shape of SHAPES) {
    for (let start = i - shape.len + 1; start <= i; start++) {
      // Changed bytes before `i` in this site were reached first and explained already (or reported).
      if (start >= 0 && flipped(before, after, start, shape)) return start + shape.len;
    }
  }
  return null;
}
