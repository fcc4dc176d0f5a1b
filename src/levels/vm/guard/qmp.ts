/**
 * The `vm` / `emu` interceptors, from outside the guest:
 *
 * - `QmpInterceptor`: every QMP event of every VM (STOP, RESUME, SHUTDOWN,
 *   RESET, POWERDOWN, GUEST_PANICKED, WATCHDOG, …) as a `vm.event` event,
 *   tapped from the driver's own monitor connections (QEMU serves one client
 *   per QMP socket) and batched off the socket reader. SHUTDOWN and RESET
 *   carry `vm.expected`: false when the guest did it (`vm.guest`) without the
 *   host asking for a power-down (a POWERDOWN in the minute before) — a reboot
 *   or a panic (`panic=-1` with `-no-reboot`: QEMU ends with reason
 *   `guest-reset`), or the guest powering itself off.
 * - `KernelTextWatch`: introspection. The guest kernel's text section is read
 *   from guest-physical memory with QMP `pmemsave` and hashed (SHA-256, and per
 *   4 KiB page so a change can be located); a baseline taken after boot is
 *   compared with later reads, and each check is a `kernel.text` event with
 *   `kernel.text_matches`. A rootkit that patches kernel code changes the hash.
 *   Where the text is comes from the kernel image itself: its ELF `.text`
 *   section, mapped to a physical address through the program headers (the
 *   direct-boot x86_64 `vmlinux`; a compressed image has no such map, and such
 *   guests get no kernel-text check).
 */
import { createHash } from 'node:crypto';
import { open, readFile, rm, writeFile } from 'node:fs/promises';
import type { FieldValue, GuardEvent, Priority } from '../../../core/guard-event.js';
import type { Emit, Interceptor } from '../../../core/interceptor.js';
import { EventBatch } from '../../../core/event-batch.js';
import type { Level } from '../../ids.js';
import { classifyTextChange } from './kernel-patches.js';

/** A QMP event as the driver's client delivers it. */
export interface QmpEventLike {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

/** Who a monitor socket belongs to; null for sockets the guard does not know. */
export type QmpSubjectOf = (socketPath: string) => { tenantId: string; instanceId: string; level: Level } | null;

/** The tap the vm level offers (qmp.ts `tapQmpEvents`). */
export type QmpTap = (tap: (socketPath: string, event: QmpEventLike) => void) => () => void;

const EVENT_PRIORITY: Record<string, Priority> = {
  GUEST_PANICKED: 'critical', GUEST_CRASHLOADED: 'critical', WATCHDOG: 'error',
  SHUTDOWN: 'notice', RESET: 'notice', POWERDOWN: 'notice', STOP: 'info', RESUME: 'info',
};

/** How long after a host-requested power-down (POWERDOWN) the guest's own SHUTDOWN counts as the answer to it. */
const POWERDOWN_ANSWER_MS = 60_000;

export class QmpInterceptor implements Interceptor {
  readonly id = 'qmp:events';
  #untap: (() => void) | undefined;
  #batch: EventBatch | undefined;
  /** Socket path → when the host last asked its guest to power down. */
  readonly #powerdownAt = new Map<string, number>();

  constructor(private readonly tap: QmpTap, private readonly subjectOf: QmpSubjectOf) {}

  async start(emit: Emit): Promise<void> {
    const batch = (this.#batch = new EventBatch(emit));
    this.#untap = this.tap((path, e) => {
      const s = this.subjectOf(path);
      if (!s) return;
      const time = e.timestamp ? e.timestamp.seconds * 1000 + Math.floor(e.timestamp.microseconds / 1000) : Date.now();
      const fields: Record<string, FieldValue> = { 'vm.event': e.event, ...flat(e.data ?? {}, 'vm.') };
      let priority = EVENT_PRIORITY[e.event] ?? 'info';
      if (e.event === 'POWERDOWN') this.#powerdownAt.set(path, time);
      if (e.event === 'SHUTDOWN' || e.event === 'RESET') {
        const asked = time - (this.#powerdownAt.get(path) ?? -Infinity) <= POWERDOWN_ANSWER_MS;
        fields['vm.expected'] = e.data?.guest !== true || (asked && e.event === 'SHUTDOWN');
        if (!fields['vm.expected']) priority = 'warning';
        if (e.event === 'SHUTDOWN') this.#powerdownAt.delete(path);
      }
      batch.push({ time, tenantId: s.tenantId, instanceId: s.instanceId, level: s.level, kind: 'vm.event', priority, fields });
    });
  }

  async stop(): Promise<void> {
    this.#untap?.();
    this.#batch?.flush();
  }
}

function flat(data: Record<string, unknown>, prefix: string, out: Record<string, FieldValue> = {}): Record<string, FieldValue> {
  for (const [k, v] of Object.entries(data)) {
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') out[prefix + k] = v;
    else if (v && typeof v === 'object' && !Array.isArray(v)) flat(v as Record<string, unknown>, `${prefix}${k}.`, out);
  }
  return out;
}

/** Where the kernel's code is in guest-physical memory. */
export interface KernelTextRegion {
  physAddr: number;
  size: number;
}

/** The `.text` section of an ELF64 little-endian kernel image, as a guest-physical range; null for other images. */
export async function kernelTextRegion(imagePath: string): Promise<KernelTextRegion | null> {
  const fh = await open(imagePath, 'r');
  try {
    const read = async (pos: number, len: number): Promise<Buffer> => {
      const buf = Buffer.alloc(len);
      await fh.read(buf, 0, len, pos);
      return buf;
    };
    const h = await read(0, 64);
    if (h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1) return null; // not ELF64 LE
    const phoff = Number(h.readBigUInt64LE(0x20)), shoff = Number(h.readBigUInt64LE(0x28));
    const phentsize = h.readUInt16LE(0x36), phnum = h.readUInt16LE(0x38), shentsize = h.readUInt16LE(0x3a), shnum = h.readUInt16LE(0x3c), shstrndx = h.readUInt16LE(0x3e);
    const sections = await read(shoff, shentsize * shnum);
    const strtab = sections.subarray(shstrndx * shentsize);
    const names = await read(Number(strtab.readBigUInt64LE(0x18)), Number(strtab.readBigUInt64LE(0x20)));
    let text: { addr: bigint; size: bigint } | null = null;
    for (let i = 0; i < shnum; i++) {
      const sh = sections.subarray(i * shentsize);
      const nameAt = sh.readUInt32LE(0);
      if (names.toString('latin1', nameAt, names.indexOf(0, nameAt)) === '.text') text = { addr: sh.readBigUInt64LE(0x10), size: sh.readBigUInt64LE(0x20) };
    }
    if (!text) return null;
    const segments = await read(phoff, phentsize * phnum);
    for (let i = 0; i < phnum; i++) {
      const ph = segments.subarray(i * phentsize);
      if (ph.readUInt32LE(0) !== 1) continue; // PT_LOAD
      const vaddr = ph.readBigUInt64LE(0x10), paddr = ph.readBigUInt64LE(0x18), memsz = ph.readBigUInt64LE(0x28);
      if (text.addr >= vaddr && text.addr + text.size <= vaddr + memsz) return { physAddr: Number(paddr + (text.addr - vaddr)), size: Number(text.size) };
    }
    return null;
  } finally {
    await fh.close();
  }
}

/** The part of a QMP client the watch needs. */
export interface QmpCommands {
  execute<T = unknown>(command: string, args?: Record<string, unknown>, timeoutMs?: number): Promise<T>;
}

export interface KernelTextCheck {
  /** No change beyond what the kernel does to its own text (`kernel-patches.ts`). */
  matches: boolean;
  hash: string;
  baselineHash: string;
  /** Byte offsets (into .text) of the 4 KiB pages with a change nothing explains. */
  changedPages: number[];
  /** Jump-label sites the kernel itself has flipped since the baseline. */
  patchedSites: number;
}

const PAGE = 4096;

export class KernelTextWatch {
  #baseline: { hash: string; pages: string[] } | null = null;

  /**
   * `dumpPath`: a file QEMU may write (it runs as the VM user) and the daemon may read.
   * `baselinePath`: where the baseline's bytes are kept for comparing changed pages — a place only the daemon may write.
   */
  constructor(private readonly qmp: QmpCommands, readonly region: KernelTextRegion, private readonly dumpPath: string, private readonly baselinePath: string) {}

  get baselineHash(): string | null {
    return this.#baseline?.hash ?? null;
  }

  /** Reads the kernel text now and keeps it as the baseline (take it once the guest has booted). */
  async baseline(): Promise<string> {
    const text = await this.#read();
    await writeFile(this.baselinePath, text, { mode: 0o600 });
    this.#baseline = digest(text);
    return this.#baseline.hash;
  }

  async check(): Promise<KernelTextCheck> {
    const baseline = this.#baseline;
    if (!baseline) throw new Error('no kernel text baseline yet');
    const text = await this.#read();
    const now = digest(text);
    const differing = now.pages.flatMap((p, i) => (p === baseline.pages[i] ? [] : [i]));
    const result = { hash: now.hash, baselineHash: baseline.hash, matches: true, changedPages: [] as number[], patchedSites: 0 };
    if (differing.length === 0) return result;
    // Only the differing pages are compared byte by byte, against the baseline kept on disk.
    const before = await readFile(this.baselinePath);
    for (const page of differing) {
      const change = classifyTextChange(before, text, page * PAGE, Math.min((page + 1) * PAGE, text.length));
      result.patchedSites += change.patchedSites;
      if (change.unexplained.length > 0) result.changedPages.push(page * PAGE);
    }
    result.matches = result.changedPages.length === 0;
    return result;
  }

  /** The check as a guard event. */
  static event(subject: { tenantId: string | null; instanceId: string; level: Level }, c: KernelTextCheck): GuardEvent {
    return {
      time: Date.now(), ...subject, kind: 'kernel.text', priority: c.matches ? 'info' : 'critical',
      fields: {
        'kernel.text_matches': c.matches, 'kernel.text_hash': c.hash, 'kernel.baseline_hash': c.baselineHash,
        'kernel.changed_pages': c.changedPages.length, 'kernel.patched_sites': c.patchedSites, ...(c.changedPages.length ? { 'kernel.first_changed_offset': `0x${c.changedPages[0]!.toString(16)}` } : {}),
      },
    };
  }

  async #read(): Promise<Buffer> {
    await rm(this.dumpPath, { force: true });
    await this.qmp.execute('pmemsave', { val: this.region.physAddr, size: this.region.size, filename: this.dumpPath }, 60_000);
    try {
      return await readFile(this.dumpPath);
    } finally {
      await rm(this.dumpPath, { force: true });
    }
  }
}

function digest(text: Buffer): { hash: string; pages: string[] } {
  const pages: string[] = [];
  for (let off = 0; off < text.length; off += PAGE) pages.push(createHash('sha256').update(text.subarray(off, off + PAGE)).digest('hex'));
  return { hash: createHash('sha256').update(text).digest('hex'), pages };
}
