/**
 * RFC 6962 (Certificate Transparency) Merkle tree hashing with SHA-256, as
 * restated in RFC 9162 §2.1: leaf = SHA-256(0x00 || data), node =
 * SHA-256(0x01 || left || right), and a tree over n leaves splits at the largest
 * power of two below n. The two prefixes keep a leaf from passing for a node.
 *
 * `MerkleTree` keeps every complete subtree hash in memory (about 2 × 32 bytes a
 * leaf) so roots and proofs for any past size cost O(log n) lookups and at most
 * O(log n) hashes; `Frontier` keeps only the compact range (one hash per set bit
 * of the size) for a streaming pass such as verification. The verifiers follow
 * RFC 9162 §2.1.3.2 and §2.1.4.2 and never throw on hostile input: they answer
 * false.
 */
import { hash } from 'node:crypto';

export const HASH_SIZE = 32;

const sha256 = (data: Buffer): Buffer => hash('sha256', data, 'buffer');

/** MTH({}) — the root of the empty tree, SHA-256 of the empty string. */
export const EMPTY_ROOT: Buffer = sha256(Buffer.alloc(0));

export function hashLeaf(data: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(1 + data.length);
  buf[0] = 0x00;
  buf.set(data, 1);
  return sha256(buf);
}

export function hashChildren(left: Buffer, right: Buffer): Buffer {
  const buf = Buffer.allocUnsafe(1 + 2 * HASH_SIZE);
  buf[0] = 0x01;
  left.copy(buf, 1);
  right.copy(buf, 1 + HASH_SIZE);
  return sha256(buf);
}

/** Largest power of two strictly below n (n ≥ 2): where RFC 6962 splits a tree of n leaves. */
function splitPoint(n: number): number {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

/** Largest power of two ≤ n (n ≥ 1) and its exponent: the biggest complete subtree a range starts with. */
function leftmostSubtree(n: number): { width: number; level: number } {
  let width = 1;
  let level = 0;
  while (width * 2 <= n) {
    width *= 2;
    level++;
  }
  return { width, level };
}

/** An append-only list of 32-byte hashes in fixed-size chunks: no per-hash objects, no copying on growth. */
class HashList {
  static readonly #PER_CHUNK = 4096;
  #chunks: Buffer[] = [];
  length = 0;

  push(h: Buffer): void {
    const slot = this.length % HashList.#PER_CHUNK;
    if (slot === 0) this.#chunks.push(Buffer.allocUnsafe(HashList.#PER_CHUNK * HASH_SIZE));
    h.copy(this.#chunks[this.#chunks.length - 1]!, slot * HASH_SIZE);
    this.length++;
  }

  /** The stored bytes themselves: only for hashing on the spot, as a later truncate-and-append reuses them. */
  view(i: number): Buffer {
    const chunk = this.#chunks[Math.floor(i / HashList.#PER_CHUNK)]!;
    const offset = (i % HashList.#PER_CHUNK) * HASH_SIZE;
    return chunk.subarray(offset, offset + HASH_SIZE);
  }

  truncate(length: number): void {
    this.length = Math.min(this.length, length);
    this.#chunks.length = Math.ceil(this.length / HashList.#PER_CHUNK);
  }
}

/**
 * An in-memory RFC 6962 tree over leaf hashes. `levels[h]` holds, left to right,
 * the hash of every complete subtree of 2^h leaves; a range that RFC 6962's
 * recursion visits is always a run of such subtrees, so any root or proof node is
 * a few lookups plus one hash per incomplete right edge.
 */
export class MerkleTree {
  #levels: HashList[] = [new HashList()];

  static from(leafHashes: readonly Buffer[]): MerkleTree {
    const tree = new MerkleTree();
    for (const h of leafHashes) tree.append(h);
    return tree;
  }

  get size(): number {
    return this.#levels[0]!.length;
  }

  /** Adds a leaf hash; completes at most one subtree per level (amortised O(1), worst O(log n)). */
  append(leafHash: Buffer): void {
    if (leafHash.length !== HASH_SIZE) throw new RangeError(`leaf hash must be ${HASH_SIZE} bytes`);
    let node = leafHash;
    let level = 0;
    let index = this.size;
    this.#levels[0]!.push(node);
    while (index % 2 === 1) {
      node = hashChildren(this.#levels[level]!.view(index - 1), node);
      level++;
      index = (index - 1) / 2;
      (this.#levels[level] ??= new HashList()).push(node);
    }
  }

  /** Forgets every leaf from `size` on (and every subtree that covered one): how a rolled-back append is undone. */
  truncate(size: number): void {
    let width = 1;
    for (const list of this.#levels) {
      list.truncate(Math.floor(size / width));
      width *= 2;
    }
  }

  leafHash(index: number): Buffer {
    this.#checkIndex(index, this.size);
    return Buffer.from(this.#levels[0]!.view(index));
  }

  /** MTH of the first `size` leaves: the complete subtrees named by the set bits of `size`, folded smallest first. */
  root(size = this.size): Buffer {
    this.#checkSize(size);
    let root: Buffer | undefined;
    for (let level = 0, count = size; count > 0; level++, count = Math.floor(count / 2)) {
      if (count % 2 === 0) continue;
      const node = this.#levels[level]!.view(count - 1);
      root = root ? hashChildren(node, root) : node;
    }
    return Buffer.from(root ?? EMPTY_ROOT);
  }

  /** RFC 6962 PATH(index, D[0:size]): the audit path, bottom-up. */
  inclusionProof(index: number, size = this.size): Buffer[] {
    this.#checkSize(size);
    this.#checkIndex(index, size);
    const topDown: Buffer[] = [];
    let start = 0;
    let end = size;
    while (end - start > 1) {
      const k = splitPoint(end - start);
      if (index < start + k) {
        topDown.push(this.#range(start + k, end));
        end = start + k;
      } else {
        topDown.push(this.#range(start, start + k));
        start += k;
      }
    }
    return topDown.reverse();
  }

  /** RFC 6962 PROOF(first, D[0:second]); empty when first = second. Needs 1 ≤ first ≤ second. */
  consistencyProof(first: number, second = this.size): Buffer[] {
    this.#checkSize(second);
    if (!Number.isSafeInteger(first) || first < 1 || first > second) {
      throw new RangeError(`consistency proof needs 1 <= first <= second, got ${first}, ${second}`);
    }
    const topDown: Buffer[] = [];
    let m = first;
    let start = 0;
    let end = second;
    let oldTreeIsThisSubtree = true;
    while (m !== end - start) {
      const k = splitPoint(end - start);
      if (m <= k) {
        topDown.push(this.#range(start + k, end));
        end = start + k;
      } else {
        topDown.push(this.#range(start, start + k));
        start += k;
        m -= k;
        oldTreeIsThisSubtree = false;
      }
    }
    // SUBPROOF(m, D[m], b): the verifier knows this subtree's hash only when it is the whole old tree.
    if (!oldTreeIsThisSubtree) topDown.push(this.#range(start, end));
    return topDown.reverse();
  }

  /** MTH(D[start:end]) for a range RFC 6962's recursion visits (start aligned to the range's leading subtree). */
  #range(start: number, end: number): Buffer {
    const { width, level } = leftmostSubtree(end - start);
    const left = this.#levels[level]!.view(start / width);
    return width === end - start ? Buffer.from(left) : hashChildren(left, this.#range(start + width, end));
  }

  #checkSize(size: number): void {
    if (!Number.isSafeInteger(size) || size < 0 || size > this.size) {
      throw new RangeError(`tree size ${size} is outside 0..${this.size}`);
    }
  }

  #checkIndex(index: number, size: number): void {
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) {
      throw new RangeError(`leaf index ${index} is outside 0..${size - 1}`);
    }
  }
}

/**
 * The compact range [0, size): the roots of the complete subtrees named by the
 * set bits of `size`, largest first. O(log n) memory and O(log n) append, so a
 * verifier can stream a log of any length and still have the root after every leaf.
 */
export class Frontier {
  #nodes: Buffer[] = [];
  #size = 0;

  get size(): number {
    return this.#size;
  }

  append(leafHash: Buffer): void {
    let node = leafHash;
    for (let s = this.#size; s % 2 === 1; s = (s - 1) / 2) node = hashChildren(this.#nodes.pop()!, node);
    this.#nodes.push(node);
    this.#size++;
  }

  root(): Buffer {
    if (this.#nodes.length === 0) return Buffer.from(EMPTY_ROOT);
    let root = this.#nodes[this.#nodes.length - 1]!;
    for (let i = this.#nodes.length - 2; i >= 0; i--) root = hashChildren(this.#nodes[i]!, root);
    return root;
  }
}

const isHash = (b: unknown): b is Buffer => Buffer.isBuffer(b) && b.length === HASH_SIZE;
const isSize = (n: number): boolean => Number.isSafeInteger(n) && n >= 0;

/** RFC 9162 §2.1.3.2: the root that `proof` implies for `leafHash` at `index` in a tree of `size`, or null if it implies none. */
export function rootFromInclusionProof(index: number, size: number, leafHash: Buffer, proof: readonly Buffer[]): Buffer | null {
  if (!isSize(index) || !isSize(size) || index >= size || !isHash(leafHash) || !proof.every(isHash)) return null;
  let fn = index;
  let sn = size - 1;
  let r = leafHash;
  for (const p of proof) {
    if (sn === 0) return null;
    if (fn % 2 === 1 || fn === sn) {
      r = hashChildren(p, r);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      r = hashChildren(r, p);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 ? r : null;
}

export function verifyInclusion(index: number, size: number, leafHash: Buffer, proof: readonly Buffer[], root: Buffer): boolean {
  const computed = rootFromInclusionProof(index, size, leafHash, proof);
  return computed !== null && isHash(root) && computed.equals(root);
}

/**
 * RFC 9162 §2.1.4.2: does `proof` show that the tree of `first` leaves with
 * `firstRoot` is a prefix of the tree of `second` leaves with `secondRoot`?
 * The empty tree is a prefix of every tree (with an empty proof).
 */
export function verifyConsistency(first: number, second: number, firstRoot: Buffer, secondRoot: Buffer, proof: readonly Buffer[]): boolean {
  if (!isSize(first) || !isSize(second) || first > second || !isHash(firstRoot) || !isHash(secondRoot) || !proof.every(isHash)) {
    return false;
  }
  if (first === second) return proof.length === 0 && firstRoot.equals(secondRoot);
  if (first === 0) return proof.length === 0;
  if (proof.length === 0) return false;
  const path = leftmostSubtree(first).width === first ? [firstRoot, ...proof] : [...proof];
  let fn = first - 1;
  let sn = second - 1;
  while (fn % 2 === 1) {
    fn = (fn - 1) / 2;
    sn = Math.floor(sn / 2);
  }
  let fr = path[0]!;
  let sr = path[0]!;
  for (const c of path.slice(1)) {
    if (sn === 0) return false;
    if (fn % 2 === 1 || fn === sn) {
      fr = hashChildren(c, fr);
      sr = hashChildren(c, sr);
      while (fn % 2 === 0 && fn !== 0) {
        fn /= 2;
        sn = Math.floor(sn / 2);
      }
    } else {
      sr = hashChildren(sr, c);
    }
    fn = Math.floor(fn / 2);
    sn = Math.floor(sn / 2);
  }
  return sn === 0 && fr.equals(firstRoot) && sr.equals(secondRoot);
}
