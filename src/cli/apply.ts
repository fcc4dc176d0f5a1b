/**
 * `strata apply -f FILE|DIR|-` and `strata get TENANT -o yaml`: a tenant's
 * whole setup as a file of documents (docs/apply.md). The daemon checks and
 * plans (`POST /v1/apply`); this reads the files, sends their documents in one
 * request, prints the plan as a diff, names the file and document of an error,
 * and waits for the work the apply started.
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { parseAllDocuments, stringify } from 'yaml';
import { apiError, clientFor, seg, type Operation } from './client.js';
import { CliError, print, printJson, usageError } from './output.js';

interface Step {
  action: 'create' | 'change' | 'replace' | 'delete';
  kind: string;
  tenant: string | null;
  name: string;
  document: number | null;
  changes: Array<{ field: string; from: unknown; to: unknown }>;
  reason?: string;
  takes?: 'live' | 'restart';
}
interface Result {
  dryRun: boolean;
  plan: Step[];
  summary: Record<Step['action'], number>;
  operations: Operation[];
  applied: Record<string, Record<string, 'live' | 'next-restart'>>;
}

/** Where each document sent came from: file and place in it (1-based, as people count). */
export interface Source {
  file: string;
  index: number;
}

const FILE_TYPES = /\.(ya?ml|json)$/i;

/** The files `-f` names: a file, stdin (`-`), or every YAML/JSON file of a directory, in name order. */
export function expandFiles(paths: readonly string[]): string[] {
  return paths.flatMap((p) => {
    if (p === '-') return [p];
    let st;
    try {
      st = statSync(p);
    } catch {
      throw usageError(`${p}: no such file or directory`);
    }
    if (!st.isDirectory()) return [p];
    return readdirSync(p).filter((n) => FILE_TYPES.test(n)).sort().map((n) => join(p, n));
  });
}

/** The documents of one file's text (YAML, with `---` between documents, or JSON: one object or an array of them). */
export function documentsOf(text: string, file: string): unknown[] {
  const out: unknown[] = [];
  for (const doc of parseAllDocuments(text)) {
    const err = doc.errors[0];
    if (err) {
      const line = err.linePos?.[0]?.line;
      throw new CliError(`${file}${line ? `:${line}` : ''}: ${err.message.split('\n')[0]}`, 'STRATA_ERR_VALIDATION');
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue; // an empty document (a trailing ---)
    if (Array.isArray(value)) out.push(...value);
    else out.push(value);
  }
  return out;
}

function readAll(files: readonly string[]): { documents: unknown[]; sources: Source[] } {
  const documents: unknown[] = [];
  const sources: Source[] = [];
  for (const file of files) {
    const name = file === '-' ? '(stdin)' : file;
    const docs = documentsOf(readFileSync(file === '-' ? 0 : file, 'utf8'), name);
    docs.forEach((d, i) => {
      documents.push(d);
      sources.push({ file: name, index: i + 1 });
    });
  }
  return { documents, sources };
}

/** "acme.yaml document 3" for a document the API named by its place in the request. */
const where = (sources: readonly Source[], n: number): string =>
  sources[n] ? `${sources[n].file} document ${sources[n].index}` : `document ${n}`;

/** The API's error with each document named by its file: the message and every issue. */
function locate(status: number, text: string, sources: readonly Source[]): CliError {
  const e = apiError(status, text);
  let details: { document?: number; issues?: Array<{ document?: number; field: string; message: string }> } | undefined;
  try {
    details = (JSON.parse(text) as { error?: { details?: typeof details } }).error?.details;
  } catch {
    return e;
  }
  const issues = (details?.issues ?? []).filter((i) => typeof i.document === 'number');
  if (issues.length) {
    return new CliError(issues.map((i) => `${where(sources, i.document!)}: ${i.field}: ${i.message}`).join('; '), e.code);
  }
  const message = e.message.replace(/^document (\d+)/, (_, n: string) => where(sources, Number(n)));
  return new CliError(message, e.code);
}

const SIGN: Record<Step['action'], string> = { create: '+', change: '~', replace: '-/+', delete: '-' };
const show = (v: unknown): string => (v === null || v === undefined ? '(none)' : typeof v === 'string' ? v : JSON.stringify(v));

/** The plan as a diff: one line per object, one indented line per field that differs. */
export function renderPlan(plan: readonly Step[], sources: readonly Source[] = []): string {
  if (plan.length === 0) return 'No changes: the daemon holds what the files say.';
  const lines: string[] = [];
  for (const e of plan) {
    const name = e.kind === 'Instance' || e.kind === 'Certificate' ? `${e.tenant}/${e.name}` : e.name;
    const from = e.document !== null && sources.length ? `  [${where(sources, e.document)}]` : '';
    lines.push(`${SIGN[e.action]} ${e.action} ${e.kind.toLowerCase()} ${name}${e.reason ? ` (${e.reason})` : ''}${from}`);
    const when = e.takes === 'restart' ? ' (at the next restart)' : e.takes === 'live' ? ' (live)' : '';
    for (const c of e.changes) lines.push(`    ${c.field}: ${show(c.from)} → ${show(c.to)}${e.action === 'change' ? when : ''}`);
  }
  return lines.join('\n');
}

const summaryLine = (r: Result, verb: string): string =>
  `${verb}: ${r.summary.create} to create, ${r.summary.change} to change, ${r.summary.replace} to replace, ${r.summary.delete} to delete.`;

/** Fields a running instance takes only at its next restart, as the levels reported them. */
function restartNotes(applied: Result['applied']): string[] {
  return Object.entries(applied).flatMap(([instance, fields]) => {
    const later = Object.entries(fields).filter(([, how]) => how === 'next-restart').map(([f]) => f);
    return later.length ? [`${instance}: ${later.join(', ')} take effect at the next restart`] : [];
  });
}

export function registerApply(program: Command): void {
  program.command('apply')
    .description('make the daemon hold what YAML/JSON files of documents say (tenants, users, instances, sites, certificates, listeners); see docs/apply.md')
    .requiredOption('-f, --file <path>', 'a file, a directory (every .yaml, .yml and .json in it) or - for stdin; repeatable', (v: string, prev: string[] = []) => [...prev, v])
    .option('--dry-run', 'print the plan as a diff; change nothing')
    .option('--prune', "delete what the files' tenants hold and the files do not name")
    .option('--no-wait', 'do not wait for the instance work the apply starts')
    .action(async (o: { file: string[]; dryRun?: boolean; prune?: boolean; wait: boolean }, cmd: Command) => {
      const c = clientFor(cmd);
      const { documents, sources } = readAll(expandFiles(o.file));
      const res = await c.fetch('POST', '/v1/apply', { body: { documents, dryRun: o.dryRun === true, prune: o.prune === true } });
      const text = await res.text();
      if (!res.ok) throw locate(res.status, text, sources);
      const r = JSON.parse(text) as Result;
      if (!o.dryRun && o.wait) r.operations = await Promise.all(r.operations.map((op) => c.waitFor(op)));
      if (c.config.json) return printJson(r);
      print(renderPlan(r.plan, sources));
      if (r.plan.length === 0) return;
      print(summaryLine(r, r.dryRun ? 'Plan' : 'Applied'));
      for (const note of restartNotes(r.applied)) print(note);
    });

  program.command('get <tenant>')
    .description('a tenant as apply documents (users, instances, sites, certificates, listeners its sites use); uploaded keys are never included')
    .option('-o, --output <format>', 'yaml or json', 'yaml')
    .action(async (tenant: string, o: { output: string }, cmd: Command) => {
      if (o.output !== 'yaml' && o.output !== 'json') throw usageError(`-o: yaml or json, not '${o.output}'`);
      const c = clientFor(cmd);
      const { documents } = await c.get<{ documents: unknown[] }>(`/v1/tenants/${seg(tenant)}/export`);
      if (o.output === 'json' || c.config.json) return printJson(documents);
      process.stdout.write(documents.map((d) => stringify(d)).join('---\n'));
    });
}
