/**
 * Checks of an audit log that need nothing but its bytes and a public key.
 *
 * `verifyLog` walks the stored log once, recomputing every leaf hash and every
 * running root and checking every signed head on the way, so the first failure
 * it meets is the earliest alteration: it names that entry (or head) rather than
 * just saying "bad". `verifyDatabase` runs it on a SQLite file opened read-only
 * (`strata audit verify --data-dir DIR`, daemon running or not). `verifyExport`
 * is what a tenant runs offline on `exportTenant`'s bundle.
 *
 * What this can and cannot see: a change to any one stored field is named
 * exactly. Someone who rewrites an entry and recomputes every hash after it is
 * caught only by a signed head that covered the entry — keep a copy of heads
 * (and of the public key) outside the data dir to catch a forger who also holds
 * the signing key.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import Database from 'better-sqlite3';
import { z } from 'zod';
import { canonicalJson, decodeEntry, type AuditEntry } from './entry.js';
import { verifyTreeHead, type SignedTreeHead } from './head.js';
import { Frontier, HASH_SIZE, hashLeaf, verifyInclusion } from './merkle.js';

export type VerifyReport =
  | {
      ok: true;
      size: number;
      /** Size covered by the latest signed head. */
      signedSize: number;
      /** Entries after the latest signed head: not an error, the next head covers them. */
      unsignedTail: number;
      heads: number;
    }
  | {
      ok: false;
      /** The earliest entry found altered or missing; null when the fault is a head. */
      firstBadIndex: number | null;
      /** tree_size of the signed head found bad; null when the fault is an entry. */
      badHead: number | null;
      reason: string;
    };

type EntryRow = [seq: number, tenantId: string | null, data: unknown, leafHash: unknown, rootAfter: unknown];
type HeadRow = [treeSize: number, rootHash: unknown, timestamp: unknown, signature: unknown];

const PAGE = 10_000;

const asBytes = (v: unknown): Buffer | null => (Buffer.isBuffer(v) ? v : typeof v === 'string' ? Buffer.from(v, 'utf8') : null);
const asHash = (v: unknown): Buffer | null => (Buffer.isBuffer(v) && v.length === HASH_SIZE ? v : null);

function headFromRow([treeSize, rootHash, timestamp, signature]: HeadRow): SignedTreeHead {
  return {
    treeSize,
    rootHash: Buffer.isBuffer(rootHash) ? rootHash.toString('hex') : '',
    timestamp: typeof timestamp === 'string' ? timestamp : '',
    signature: Buffer.isBuffer(signature) ? signature.toString('base64') : '',
  };
}

const entryFault = (index: number, reason: string): VerifyReport => ({ ok: false, firstBadIndex: index, badHead: null, reason });

const badSignature = (treeSize: number): VerifyReport => ({
  ok: false, firstBadIndex: null, badHead: treeSize, reason: `signed head at size ${treeSize}: signature does not verify (head or signature altered)`,
});

/**
 * Recomputes the whole log stored in `db` (tables of schema.ts) and checks every
 * signed head with `publicKey`, all in one read transaction so that entries and
 * heads come from the same snapshot while a writer goes on appending.
 */
export function verifyLog(db: Database.Database, publicKey: KeyObject): VerifyReport {
  return db.transaction(() => walk(db, publicKey))();
}

function walk(db: Database.Database, publicKey: KeyObject): VerifyReport {
  const heads = db.prepare('SELECT tree_size, root_hash, timestamp, signature FROM audit_heads ORDER BY tree_size').raw().all() as HeadRow[];
  const page = db.prepare('SELECT seq, tenant_id, data, leaf_hash, root_after FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?').raw();
  const frontier = new Frontier();
  let nextHead = 0;
  let lastGoodHead = 0;

  /** Checks the heads that commit to exactly the entries seen so far. */
  const headFault = (root: Buffer): VerifyReport | null => {
    for (; nextHead < heads.length && heads[nextHead]![0] <= frontier.size; nextHead++) {
      const head = headFromRow(heads[nextHead]!);
      if (!verifyTreeHead(publicKey, head)) return badSignature(head.treeSize);
      if (head.rootHash !== root.toString('hex')) {
        return {
          ok: false, firstBadIndex: null, badHead: head.treeSize,
          reason: `signed head at size ${head.treeSize} does not match the log: entries ${lastGoodHead}..${head.treeSize - 1} were rewritten along with their hashes`,
        };
      }
      lastGoodHead = head.treeSize;
    }
    return null;
  };

  let fault = headFault(frontier.root());
  if (fault) return fault;
  for (let rows = page.all(0, PAGE) as EntryRow[]; rows.length > 0; rows = page.all(frontier.size, PAGE) as EntryRow[]) {
    for (const [seq, tenantId, rawData, rawLeaf, rawRoot] of rows) {
      const index = frontier.size;
      if (seq !== index) return entryFault(index, `entry ${index} is missing`);
      const data = asBytes(rawData);
      if (!data) return entryFault(index, `entry ${index}: data is not bytes`);
      const leaf = hashLeaf(data);
      frontier.append(leaf);
      const root = frontier.root();
      const storedRoot = asHash(rawRoot);
      if (!leaf.equals(asHash(rawLeaf) ?? Buffer.alloc(0))) {
        // The stored running root was computed from the original leaf, so it tells which of the two changed.
        return entryFault(index, storedRoot?.equals(root)
          ? `entry ${index}: leaf_hash altered (data still matches root_after)`
          : `entry ${index}: data altered (its hash matches neither leaf_hash nor root_after)`);
      }
      if (!storedRoot?.equals(root)) return entryFault(index, `entry ${index}: root_after altered`);
      let entryTenant: unknown;
      try {
        entryTenant = decodeEntry(data).tenantId;
      } catch {
        return entryFault(index, `entry ${index}: data is not JSON`);
      }
      if ((entryTenant ?? null) !== tenantId) return entryFault(index, `entry ${index}: tenant_id column does not match the entry`);
      fault = headFault(root);
      if (fault) return fault;
    }
  }
  const size = frontier.size;
  if (nextHead < heads.length) {
    // Heads beyond the log: either they were forged, or entries they signed were deleted.
    const beyond = heads.slice(nextHead).map(headFromRow);
    const forged = beyond.find((head) => !verifyTreeHead(publicKey, head));
    if (forged) return badSignature(forged.treeSize);
    const claimed = beyond[beyond.length - 1]!.treeSize;
    return entryFault(size, `signed head at size ${claimed} covers entries ${size}..${claimed - 1}, which are missing`);
  }
  const signedSize = heads.length > 0 ? heads[heads.length - 1]![0] : 0;
  return { ok: true, size, signedSize, unsignedTail: size - signedSize, heads: heads.length };
}

/**
 * Verifies the log in a Strata SQLite file without a daemon: opened read-only,
 * nothing written. `publicKeyPem` may also be the signing key's PEM (the public
 * half is derived).
 */
export function verifyDatabase(path: string, publicKeyPem: string | Buffer): VerifyReport {
  const publicKey = createPublicKey(publicKeyPem);
  if (publicKey.asymmetricKeyType !== 'ed25519') throw new TypeError('the audit log is signed with Ed25519; this key is not');
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return verifyLog(db, publicKey);
  } finally {
    db.close();
  }
}

/** The bundle `AuditLog.exportTenant` produces: a tenant's entries, each proven to be in one signed head. */
export interface AuditExport {
  head: SignedTreeHead;
  /** SPKI PEM of the key that signed `head`. */
  publicKey: string;
  entries: { index: number; entry: AuditEntry; leafHash: string; proof: string[] }[];
}

const Hex32 = z.string().regex(/^[0-9a-f]{64}$/);

/** The shape of an `AuditExport` read from an untrusted file. */
const AuditExportSchema = z.object({
  head: z.object({ treeSize: z.number().int().min(0), rootHash: Hex32, timestamp: z.string(), signature: z.string() }),
  publicKey: z.string(),
  entries: z.array(z.object({
    index: z.number().int().min(0),
    entry: z.record(z.string(), z.unknown()),
    leafHash: Hex32,
    proof: z.array(Hex32),
  })),
});

export type ExportReport =
  | { ok: true; treeSize: number; entries: number }
  | { ok: false; firstBadIndex: number | null; reason: string };

const exportFault = (reason: string, firstBadIndex: number | null = null): ExportReport => ({ ok: false, firstBadIndex, reason });

/**
 * Checks an export offline: the head's signature, then every entry's leaf hash
 * (recomputed from its canonical JSON) and inclusion proof against the head.
 * Pass the log's public key obtained out of band as `publicKeyPem`; without it
 * the bundle only proves it is self-consistent.
 */
export function verifyExport(bundle: unknown, opts: { publicKeyPem?: string } = {}): ExportReport {
  const parsed = AuditExportSchema.safeParse(bundle);
  if (!parsed.success) return exportFault(`not an audit export: ${parsed.error.issues[0]?.path.join('.')} ${parsed.error.issues[0]?.message}`);
  const { head, publicKey: pem, entries } = parsed.data;
  let publicKey: KeyObject;
  try {
    publicKey = createPublicKey(pem);
    if (opts.publicKeyPem !== undefined && !createPublicKey(opts.publicKeyPem).equals(publicKey)) {
      return exportFault('the bundle is signed with a different key than the one given');
    }
  } catch {
    return exportFault('publicKey is not a valid public key');
  }
  if (publicKey.asymmetricKeyType !== 'ed25519' || !verifyTreeHead(publicKey, head)) return exportFault('the signed head does not verify');
  const root = Buffer.from(head.rootHash, 'hex');
  let previous = -1;
  for (const { index, entry, leafHash, proof } of entries) {
    if (index <= previous) return exportFault(`entry ${index} is out of order or repeated`, index);
    previous = index;
    let leaf: Buffer;
    try {
      leaf = hashLeaf(Buffer.from(canonicalJson(entry), 'utf8'));
    } catch {
      return exportFault(`entry ${index} has no canonical JSON form`, index);
    }
    if (leaf.toString('hex') !== leafHash) return exportFault(`entry ${index}: content does not match its leaf hash`, index);
    if (!verifyInclusion(index, head.treeSize, leaf, proof.map((p) => Buffer.from(p, 'hex')), root)) {
      return exportFault(`entry ${index}: inclusion proof does not lead to the signed root`, index);
    }
  }
  return { ok: true, treeSize: head.treeSize, entries: entries.length };
}
