/**
 * The audit log: an append-only RFC 6962 Merkle tree stored in SQLite, with
 * Ed25519-signed tree heads, inclusion and consistency proofs, and per-tenant
 * exports a tenant can check offline (verify.ts).
 *
 * `append` is synchronous and runs in the caller's transaction when there is one,
 * so an entry commits or rolls back together with the change it records. The
 * in-memory tree (every complete subtree hash, ~64 bytes a leaf) is a cache of
 * the table: before each use it is reconciled with the table's last row, so an
 * entry whose transaction rolled back is forgotten (O(log n)) and rows written by
 * another connection are picked up.
 *
 * Heads are signed at most every `signIntervalMs` (default 200 ms) while there
 * are unsigned entries, by an unref'd timer, and by `close()`; so at most the
 * last interval's entries wait for a signature.
 */
import type { KeyObject } from 'node:crypto';
import type Database from 'better-sqlite3';
import { verifyDatabaseInWorker } from './verify-worker.js';
import { StrataError } from '../core/errors.js';
import { validationError } from '../core/validation.js';
import { decodeEntry, encodeEntry, type AuditEntry, type AuditEntryInput } from './entry.js';
import { signTreeHead, type SignedTreeHead } from './head.js';
import { HASH_SIZE, MerkleTree, hashLeaf } from './merkle.js';
import { verifyLog, type AuditExport, type VerifyReport } from './verify.js';

export type { AuditActor, AuditEntry, AuditEntryInput } from './entry.js';
export type { SignedTreeHead } from './head.js';
export type { AuditExport, VerifyReport } from './verify.js';

export interface AuditLogOptions {
  /** Longest time an entry waits for a signed head; default 200 ms. */
  signIntervalMs?: number;
  /** Where a failed background signing is reported; default `process.emitWarning`. The next interval retries. */
  onSignError?: (err: unknown) => void;
}

export interface AuditRecord {
  index: number;
  entry: AuditEntry;
  leafHash: string;
}

export interface InclusionProof {
  index: number;
  treeSize: number;
  leafHash: string;
  rootHash: string;
  /** Audit path, bottom-up, hex. */
  proof: string[];
}

export interface ConsistencyProof {
  first: number;
  second: number;
  firstRoot: string;
  secondRoot: string;
  proof: string[];
}

type HeadRow = { tree_size: number; root_hash: Buffer; timestamp: string; signature: Buffer };

const hex = (b: Buffer): string => b.toString('hex');

const outOfRange = validationError;

export class AuditLog {
  readonly #db: Database.Database;
  readonly #keys: { privateKey: KeyObject; publicKey: KeyObject };
  readonly #signIntervalMs: number;
  readonly #onSignError: (err: unknown) => void;
  readonly #tree = new MerkleTree();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  readonly #stmt: {
    lastRow: Database.Statement<[], [number, Buffer]>;
    leafAt: Database.Statement<[number], Buffer>;
    leavesFrom: Database.Statement<[number], [number, Buffer]>;
    insert: Database.Statement<[number, string | null, Buffer, Buffer, Buffer]>;
    latestHead: Database.Statement<[], HeadRow>;
    insertHead: Database.Statement<[number, Buffer, string, Buffer]>;
    page: Database.Statement<[number, number], [number, Buffer, Buffer]>;
    tenantPage: Database.Statement<[string, number, number], [number, Buffer, Buffer]>;
    tenantUpTo: Database.Statement<[string, number], [number, Buffer]>;
  };
  readonly #appendTx: Database.Transaction<(input: AuditEntryInput) => { index: number; leafHash: string }>;

  constructor(db: Database.Database, keys: { privateKey: KeyObject; publicKey: KeyObject }, opts: AuditLogOptions = {}) {
    if (keys.privateKey.asymmetricKeyType !== 'ed25519' || keys.publicKey.asymmetricKeyType !== 'ed25519') {
      throw new StrataError('STRATA_ERR_CONFIG', 'the audit log signs with Ed25519 keys');
    }
    this.#db = db;
    this.#keys = keys;
    this.#signIntervalMs = opts.signIntervalMs ?? 200;
    this.#onSignError = opts.onSignError ?? ((err) => process.emitWarning(`audit head signing failed: ${String(err)}`));
    this.#stmt = {
      lastRow: db.prepare<[], [number, Buffer]>('SELECT seq, leaf_hash FROM audit_entries ORDER BY seq DESC LIMIT 1').raw(),
      leafAt: db.prepare<[number], Buffer>('SELECT leaf_hash FROM audit_entries WHERE seq = ?').pluck(),
      leavesFrom: db.prepare<[number], [number, Buffer]>('SELECT seq, leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq').raw(),
      insert: db.prepare('INSERT INTO audit_entries (seq, tenant_id, data, leaf_hash, root_after) VALUES (?, ?, ?, ?, ?)'),
      latestHead: db.prepare<[], HeadRow>('SELECT tree_size, root_hash, timestamp, signature FROM audit_heads ORDER BY tree_size DESC LIMIT 1'),
      insertHead: db.prepare('INSERT INTO audit_heads (tree_size, root_hash, timestamp, signature) VALUES (?, ?, ?, ?)'),
      page: db.prepare<[number, number], [number, Buffer, Buffer]>('SELECT seq, data, leaf_hash FROM audit_entries WHERE seq >= ? ORDER BY seq LIMIT ?').raw(),
      tenantPage: db.prepare<[string, number, number], [number, Buffer, Buffer]>(
        'SELECT seq, data, leaf_hash FROM audit_entries WHERE tenant_id = ? AND seq >= ? ORDER BY seq LIMIT ?',
      ).raw(),
      tenantUpTo: db.prepare<[string, number], [number, Buffer]>('SELECT seq, data FROM audit_entries WHERE tenant_id = ? AND seq < ? ORDER BY seq').raw(),
    };
    this.#appendTx = db.transaction((input: AuditEntryInput) => this.#appendHere(input));
    this.#loadFrom(0);
    if (this.#unsigned() > 0) this.#scheduleSign();
  }

  /**
   * Appends one entry and returns its leaf index. Runs inside the caller's
   * transaction if one is open (the entry then lives or dies with it), else in
   * its own.
   */
  append(input: AuditEntryInput): { index: number; leafHash: string } {
    return this.#appendTx.immediate(input);
  }

  size(): number {
    this.#sync();
    return this.#tree.size;
  }

  /** Signs the current tree, unless the latest head already covers it (then returns that head). */
  signHead(): SignedTreeHead {
    this.#sync();
    const latest = this.latestHead();
    const treeSize = this.#tree.size;
    if (latest?.treeSize === treeSize) return latest;
    const head = signTreeHead(this.#keys.privateKey, { treeSize, rootHash: hex(this.#tree.root()), timestamp: new Date().toISOString() });
    this.#stmt.insertHead.run(head.treeSize, Buffer.from(head.rootHash, 'hex'), head.timestamp, Buffer.from(head.signature, 'base64'));
    return head;
  }

  latestHead(): SignedTreeHead | undefined {
    const row = this.#stmt.latestHead.get();
    return row && {
      treeSize: row.tree_size, rootHash: hex(row.root_hash), timestamp: row.timestamp, signature: row.signature.toString('base64'),
    };
  }

  publicKeyPem(): string {
    return this.#keys.publicKey.export({ type: 'spki', format: 'pem' }).toString();
  }

  /** Entries in log order from index `from` (default 0), at most `limit` (default 100), optionally one tenant's only. */
  entries(opts: { from?: number; limit?: number; tenantId?: string } = {}): AuditRecord[] {
    const from = opts.from ?? 0;
    const limit = opts.limit ?? 100;
    const rows = opts.tenantId === undefined ? this.#stmt.page.all(from, limit) : this.#stmt.tenantPage.all(opts.tenantId, from, limit);
    return rows.map(([index, data, leafHash]) => ({ index, entry: decodeEntry(data), leafHash: hex(leafHash) }));
  }

  /** Proof that entry `index` is in the tree of `treeSize` entries (default: the whole log). */
  inclusionProof(index: number, treeSize?: number): InclusionProof {
    this.#sync();
    const size = treeSize ?? this.#tree.size;
    if (!Number.isSafeInteger(size) || size < 1 || size > this.#tree.size) throw outOfRange('treeSize', `must be 1..${this.#tree.size}`);
    if (!Number.isSafeInteger(index) || index < 0 || index >= size) throw outOfRange('index', `must be 0..${size - 1}`);
    return {
      index, treeSize: size, leafHash: hex(this.#tree.leafHash(index)), rootHash: hex(this.#tree.root(size)),
      proof: this.#tree.inclusionProof(index, size).map(hex),
    };
  }

  /** Proof that the tree of `first` entries is a prefix of the tree of `second` (default: the whole log). */
  consistencyProof(first: number, second?: number): ConsistencyProof {
    this.#sync();
    const to = second ?? this.#tree.size;
    if (!Number.isSafeInteger(to) || to > this.#tree.size) throw outOfRange('second', `must be at most ${this.#tree.size}`);
    if (!Number.isSafeInteger(first) || first < 1 || first > to) throw outOfRange('first', `must be 1..${to}`);
    return {
      first, second: to, firstRoot: hex(this.#tree.root(first)), secondRoot: hex(this.#tree.root(to)),
      proof: this.#tree.consistencyProof(first, to).map(hex),
    };
  }

  /**
   * Every entry of one tenant with its inclusion proof in a freshly signed head
   * (or the latest, if nothing was appended since): what `verifyExport` checks.
   */
  exportTenant(tenantId: string): AuditExport {
    const head = this.signHead();
    const entries = this.#stmt.tenantUpTo.all(tenantId, head.treeSize).map(([index, data]) => ({
      index,
      entry: decodeEntry(data),
      leafHash: hex(this.#tree.leafHash(index)),
      proof: this.#tree.inclusionProof(index, head.treeSize).map(hex),
    }));
    return { head, publicKey: this.publicKeyPem(), entries };
  }

  /** Recomputes the whole stored log; names the first altered entry or head. */
  verify(): VerifyReport {
    return verifyLog(this.#db, this.#keys.publicKey);
  }

  /** `verify` on a read-only connection in a worker thread (file-backed logs): the event loop stays free. */
  verifyInBackground(): Promise<VerifyReport> {
    if (this.#db.memory) return Promise.resolve(this.verify());
    return verifyDatabaseInWorker(this.#db.name, this.publicKeyPem());
  }

  /** Signs what is pending and stops the timer. Later appends still work; the next start or close signs them. */
  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#db.open && this.#unsigned() > 0) this.signHead();
  }

  #appendHere(input: AuditEntryInput): { index: number; leafHash: string } {
    this.#sync();
    const data = encodeEntry({ ...input, time: input.time ?? new Date().toISOString() });
    const leaf = hashLeaf(data);
    const index = this.#tree.size;
    this.#tree.append(leaf);
    try {
      this.#stmt.insert.run(index, input.tenantId, data, leaf, this.#tree.root());
    } catch (e) {
      this.#tree.truncate(index);
      throw e;
    }
    this.#scheduleSign();
    return { index, leafHash: hex(leaf) };
  }

  /**
   * Makes the in-memory tree match the table. The common case is one indexed
   * read: the last row is the tree's last leaf. Otherwise an enclosing
   * transaction rolled back (table shorter: truncate), or another connection
   * appended (table longer: load the new rows); a changed past leaf means a full reload.
   */
  #sync(): void {
    const last = this.#stmt.lastRow.get();
    const stored = last ? last[0] + 1 : 0;
    const common = Math.min(stored, this.#tree.size);
    if (common > 0) {
      const storedLeaf = stored === common ? last![1] : this.#stmt.leafAt.get(common - 1);
      if (!storedLeaf || !storedLeaf.equals(this.#tree.leafHash(common - 1))) return this.#loadFrom(0);
    }
    if (stored !== this.#tree.size) this.#loadFrom(common);
  }

  /** Rebuilds the tree from leaf `from` on, out of the stored leaf hashes. */
  #loadFrom(from: number): void {
    this.#tree.truncate(from);
    for (const [seq, leafHash] of this.#stmt.leavesFrom.iterate(from)) {
      const index = this.#tree.size;
      if (seq !== index || !Buffer.isBuffer(leafHash) || leafHash.length !== HASH_SIZE) {
        throw new StrataError('STRATA_ERR_AUDIT_VERIFY_FAILED', `audit entry ${index} is missing or malformed; run \`strata audit verify\``, {
          firstBadIndex: index,
        });
      }
      this.#tree.append(leafHash);
    }
  }

  #unsigned(): number {
    this.#sync();
    return this.#tree.size - (this.latestHead()?.treeSize ?? 0);
  }

  #scheduleSign(): void {
    if (this.#timer || this.#closed) return;
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      if (!this.#db.open) return;
      // A caller's transaction is never open across a tick, but if one is, signing now would tie the head to its fate.
      if (this.#db.inTransaction) return this.#scheduleSign();
      try {
        if (this.#unsigned() > 0) this.signHead();
      } catch (e) {
        this.#onSignError(e);
        this.#scheduleSign();
      }
    }, this.#signIntervalMs);
    this.#timer.unref();
  }
}
