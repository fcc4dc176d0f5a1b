/**
 * Byte offsets of struct members from the running kernel's BTF
 * (/sys/kernel/btf/vmlinux), for what bpftrace 0.17 cannot express: it has no
 * `offsetof` and no `container_of`, and a path crossing a mount needs the
 * `struct mount` around a `struct vfsmount`. Read once per program generation.
 *
 * The format (kernel Documentation/bpf/btf.rst): a header, then a type section
 * of variable-length records and a string section.
 */
import { readFileSync } from 'node:fs';

/** Extra bytes after the 12-byte common header of each BTF kind (index = kind), per `vlen` where it says so. */
const FIXED: Record<number, number> = { 1: 4, 3: 12, 14: 4, 17: 4 };
const PER_VLEN: Record<number, number> = { 4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12 };

/** Offsets (bytes) of `members` in the struct named `struct`, or null if the kernel's BTF lacks one of them. */
export function structOffsets(struct: string, members: readonly string[], path = '/sys/kernel/btf/vmlinux'): Record<string, number> | null {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch {
    return null;
  }
  if (buf.readUInt16LE(0) !== 0xeb9f) return null;
  const hdrLen = buf.readUInt32LE(4);
  const typeOff = hdrLen + buf.readUInt32LE(8);
  const typeEnd = typeOff + buf.readUInt32LE(12);
  const strOff = hdrLen + buf.readUInt32LE(16);
  const name = (off: number): string => {
    const start = strOff + off;
    return buf.toString('latin1', start, buf.indexOf(0, start));
  };
  for (let at = typeOff; at < typeEnd;) {
    const nameOff = buf.readUInt32LE(at);
    const info = buf.readUInt32LE(at + 4);
    const kind = (info >>> 24) & 0x1f;
    const vlen = info & 0xffff;
    const kindFlag = info >>> 31;
    const body = at + 12;
    at = body + (FIXED[kind] ?? 0) + (PER_VLEN[kind] ?? 0) * vlen;
    if (kind !== 4 || name(nameOff) !== struct) continue;
    const found: Record<string, number> = {};
    for (let i = 0; i < vlen; i++) {
      const m = body + i * 12;
      const bits = buf.readUInt32LE(m + 8);
      found[name(buf.readUInt32LE(m))] = (kindFlag ? bits & 0xffffff : bits) / 8;
    }
    if (members.every((n) => n in found)) return Object.fromEntries(members.map((n) => [n, found[n]!]));
  }
  return null;
}
