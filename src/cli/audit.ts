/**
 * `strata audit`: the tamper-evident log. Read entries, get inclusion and
 * consistency proofs, export a tenant's entries with their proofs, and verify —
 * on the server, or offline from the data dir or an export with no daemon to trust.
 */
import { createPublicKey } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import type { ConsistencyProof, InclusionProof } from '../audit/log.js';
import { verifyConsistency, verifyInclusion } from '../audit/merkle.js';
import { integer } from './args.js';
import { clientFor } from './client.js';
import { CliError, cell, emit, keyValues, print, printJson, table, when } from './output.js';

/** What `verifyLog` / `GET /v1/audit/verify` report. */
type VerifyReport =
  | { ok: true; size: number; signedSize: number; unsignedTail: number; heads: number }
  | { ok: false; firstBadIndex: number | null; badHead: number | null; reason: string };

interface EntryItem {
  index: number;
  entry: {
    time: string;
    actor: { name: string; role: string };
    action: string;
    target: string;
    result: string;
    status?: number;
    reason?: string;
  };
}

const AUDIT_FAILED = 'STRATA_ERR_AUDIT_VERIFY_FAILED';

/** Prints an ok report, or fails with one line naming the first bad entry (or head). */
function report(json: boolean, r: VerifyReport, where: string): void {
  if (json) printJson(r);
  if (!r.ok) {
    const first = r.firstBadIndex !== null ? `first bad entry #${r.firstBadIndex}` : `bad signed head at size ${r.badHead}`;
    throw new CliError(`audit log ${where} does not verify: ${first}: ${r.reason}`, AUDIT_FAILED);
  }
  if (!json) {
    print(`audit log ${where} verifies: ${r.size} entries, ${r.heads} signed heads, the latest covers ${r.signedSize}` +
      (r.unsignedTail ? ` (${r.unsignedTail} newer entries await the next head)` : ''));
  }
}

/** A proof or head: scalars as key/value lines, hash lists one per line. */
function showObject(o: unknown): string {
  if (typeof o !== 'object' || o === null) return cell(o);
  const lines: string[] = [];
  const scalars: Array<[string, unknown]> = [];
  for (const [k, v] of Object.entries(o)) {
    if (Array.isArray(v)) lines.push(`${k}: (${v.length})`, ...v.map((x) => `  ${cell(x)}`));
    else scalars.push([k, v]);
  }
  return [...(scalars.length ? [keyValues(scalars)] : []), ...lines].join('\n');
}

const hash = (hex: string): Buffer => Buffer.from(hex, 'hex');

/** Prints a proof the CLI has recomputed itself; a proof that does not check out is an error. */
function checked(json: boolean, proof: object, ok: boolean, claim: string): void {
  emit(json, proof, (p) => `${showObject(p)}\n${ok ? `checked: ${claim}` : ''}`.trimEnd());
  if (!ok) throw new CliError(`the proof does not check out: it does not show that ${claim}`, AUDIT_FAILED);
}

const readKey = (file: string): string => {
  try {
    return createPublicKey(readFileSync(file)).export({ type: 'spki', format: 'pem' }).toString();
  } catch (e) {
    throw new CliError(`cannot read a key from ${file}: ${(e as Error).message}`, 'STRATA_ERR_CONFIG');
  }
};

export function registerAudit(program: Command): void {
  const audit = program.command('audit').description('read, prove, export and verify the audit log');

  audit.command('verify').description('verify the whole log: on the server, or offline with --data-dir')
    .option('--data-dir <dir>', 'verify DIR/strata.db offline with the key in DIR/audit-key.pem (the daemon may run or not)')
    .option('--public-key <file>', 'with --data-dir: check the heads with this public key (kept outside the data dir) instead')
    .action(async (o: { dataDir?: string; publicKey?: string }, cmd: Command) => {
      const json = Boolean(cmd.optsWithGlobals<{ json?: boolean }>().json);
      if (!o.dataDir) {
        if (o.publicKey) throw new CliError('--public-key goes with --data-dir', 'STRATA_ERR_VALIDATION', 2);
        return report(json, await clientFor(cmd).get<VerifyReport>('/v1/audit/verify'), 'on the server');
      }
      const { verifyDatabase } = await import('../audit/verify.js');
      const pem = readKey(o.publicKey ?? join(o.dataDir, 'audit-key.pem'));
      const db = join(o.dataDir, 'strata.db');
      let r: VerifyReport;
      try {
        r = verifyDatabase(db, pem);
      } catch (e) {
        throw new CliError(`cannot verify ${db}: ${(e as Error).message}`, 'STRATA_ERR_CONFIG');
      }
      report(json, r, `in ${db}`);
    });

  audit.command('log').description('list audit entries (a tenant sees its own)')
    .option('--tenant <tenant>', "only this tenant's entries")
    .option('--from <n>', 'first entry index', integer(0), 0)
    .option('--limit <n>', 'at most N entries', integer(1, 10_000), 100)
    .action(async (o: { tenant?: string; from: number; limit: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<{ items: EntryItem[] }>('/v1/audit/entries', { tenant: o.tenant, from: o.from, limit: o.limit });
      emit(c.config.json, res, ({ items }) => table(
        ['INDEX', 'TIME', 'ACTOR', 'ACTION', 'TARGET', 'RESULT', 'REASON'],
        items.map(({ index, entry: e }) => [
          index, when(e.time), `${e.actor.name} (${e.actor.role})`, e.action, e.target, e.status ? `${e.result} ${e.status}` : e.result, e.reason,
        ]),
      ));
    });

  audit.command('proof').argument('<index>', 'entry index', integer(0))
    .description('inclusion proof of entry INDEX in the tree of size N (default: the whole log)')
    .option('--size <n>', 'tree size to prove against', integer(1))
    .action(async (index: number, o: { size?: number }, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<InclusionProof>('/v1/audit/proof/inclusion', { index, size: o.size });
      const ok = verifyInclusion(res.index, res.treeSize, hash(res.leafHash), res.proof.map(hash), hash(res.rootHash));
      checked(c.config.json, res, ok, `entry ${res.index} is in the tree of size ${res.treeSize}`);
    });

  audit.command('consistency').argument('<from>', 'older tree size', integer(1)).argument('[to]', 'newer tree size', integer(1))
    .description('proof that the log of size FROM is a prefix of the log of size TO (default: now)')
    .action(async (from: number, to: number | undefined, _o: object, cmd: Command) => {
      const c = clientFor(cmd);
      const res = await c.get<ConsistencyProof>('/v1/audit/proof/consistency', { from, to });
      const ok = verifyConsistency(res.first, res.second, hash(res.firstRoot), hash(res.secondRoot), res.proof.map(hash));
      checked(c.config.json, res, ok, `the tree of size ${res.first} is a prefix of the tree of size ${res.second}`);
    });

  audit.command('export').description("export a tenant's entries, each with its inclusion proof in a signed head")
    .option('--tenant <tenant>', 'the tenant (required for provider roles)')
    .option('--out <file>', 'write the bundle to FILE instead of stdout')
    .option('--verify', 'check the bundle offline: the head signature, every leaf hash and inclusion proof')
    .option('--public-key <file>', "with --verify: the log's public key, obtained out of band")
    .action(async (o: { tenant?: string; out?: string; verify?: boolean; publicKey?: string }, cmd: Command) => {
      const c = clientFor(cmd);
      const bundle = await c.get('/v1/audit/export', { tenant: o.tenant });
      const text = `${JSON.stringify(bundle, null, 2)}\n`;
      if (o.out) writeFileSync(o.out, text);
      else process.stdout.write(text);
      if (!o.verify) return;
      const { verifyExport } = await import('../audit/verify.js');
      const r = verifyExport(bundle, o.publicKey ? { publicKeyPem: readKey(o.publicKey) } : {});
      if (!r.ok) {
        const first = r.firstBadIndex !== null ? `first bad entry #${r.firstBadIndex}: ` : '';
        throw new CliError(`the export does not verify: ${first}${r.reason}`, AUDIT_FAILED);
      }
      (o.out ? process.stdout : process.stderr).write(`export verifies: ${r.entries} entries in the signed head of size ${r.treeSize}` +
        `${o.publicKey ? '' : " (against the bundle's own key; pass --public-key to pin it)"}\n`);
    });
}
