/**
 * Signed tree heads: the log's Ed25519 signature over (size, root, time), a
 * commitment that the first `treeSize` entries hash to `rootHash`. Anyone holding
 * an older head can ask for a consistency proof to the newer one and so catch a
 * rewritten history.
 *
 * The signed bytes are fixed and line-based so any language can rebuild them:
 *
 *     strata-audit-tree-head/v1\n<treeSize decimal>\n<rootHash hex>\n<timestamp ISO 8601>\n
 *
 * Each field is checked against a pattern with no newline, so the encoding is
 * unambiguous.
 */
import { sign, verify, type KeyObject } from 'node:crypto';

export interface TreeHead {
  treeSize: number;
  /** Lower-case hex of the 32-byte RFC 6962 root. */
  rootHash: string;
  /** ISO 8601 UTC, when the head was signed. */
  timestamp: string;
}

export interface SignedTreeHead extends TreeHead {
  /** Base64 Ed25519 signature over `treeHeadBytes(head)`. */
  signature: string;
}

const ROOT_HEX = /^[0-9a-f]{64}$/;
const ISO_UTC = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?Z$/;

export const isWellFormedHead = (h: TreeHead): boolean =>
  Number.isSafeInteger(h.treeSize) && h.treeSize >= 0 && ROOT_HEX.test(h.rootHash) && ISO_UTC.test(h.timestamp);

export function treeHeadBytes(h: TreeHead): Buffer {
  if (!isWellFormedHead(h)) throw new TypeError('tree head: treeSize, rootHash or timestamp is malformed');
  return Buffer.from(`strata-audit-tree-head/v1\n${h.treeSize}\n${h.rootHash}\n${h.timestamp}\n`, 'utf8');
}

export function signTreeHead(privateKey: KeyObject, h: TreeHead): SignedTreeHead {
  const head = { treeSize: h.treeSize, rootHash: h.rootHash, timestamp: h.timestamp };
  return { ...head, signature: sign(null, treeHeadBytes(head), privateKey).toString('base64') };
}

/** True when `h` is well formed and signed by `publicKey`; never throws on hostile input. */
export function verifyTreeHead(publicKey: KeyObject, h: SignedTreeHead): boolean {
  if (!isWellFormedHead(h) || typeof h.signature !== 'string') return false;
  try {
    return verify(null, treeHeadBytes(h), publicKey, Buffer.from(h.signature, 'base64'));
  } catch {
    return false;
  }
}
