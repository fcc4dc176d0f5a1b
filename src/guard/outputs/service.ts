/**
 * Alert outputs as the daemon keeps them: the records in the store, the
 * webhook secrets sealed with a key kept beside the store (AES-256-GCM,
 * `<data dir>/outputs-key`, 0600), and the dispatcher running what the store
 * holds. A webhook's secret is made here, shown once to whoever creates the
 * output, and never leaves again.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { writeSecret } from '../../core/secrets.js';
import type { OutputRecord, OutputRecords } from '../../store/outputs.js';
import type { Priority } from '../../core/guard-event.js';
import type { Alert } from '../actuator.js';
import { AlertDispatcher, makeSink, type DispatcherOptions } from './dispatcher.js';
import type { Attempt, OutputConfig, OutputDefinition, OutputFilter, OutputStats } from './types.js';

/** What the API hands in, already validated. */
export interface OutputSpec {
  name: string;
  config: OutputConfig;
  filter: OutputFilter;
}

/** An output as shown: its record (never its secret) and its counters. */
export interface OutputView {
  id: string;
  tenantId: string | null;
  name: string;
  config: OutputConfig;
  filter: OutputFilter;
  createdAt: string;
  stats: OutputStats | null;
  /** Why the output does not run, when it cannot (its stats are then null). */
  error: string | null;
}

/** Loads the sealing key, making it on first use. */
export function loadOutputsKey(path: string): Buffer {
  if (!existsSync(path)) writeSecret(path, randomBytes(32).toString('hex'));
  return Buffer.from(readFileSync(path, 'utf8').trim(), 'hex');
}

export function seal(key: Buffer, plain: string): string {
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  const data = Buffer.concat([c.update(plain, 'utf8'), c.final()]);
  return ['v1', iv.toString('base64url'), c.getAuthTag().toString('base64url'), data.toString('base64url')].join('.');
}

export function unseal(key: Buffer, sealed: string): string {
  const [v, iv, tag, data] = sealed.split('.');
  if (v !== 'v1' || !iv || !tag || data === undefined) throw new Error('not a sealed secret');
  const d = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
  d.setAuthTag(Buffer.from(tag, 'base64url'));
  return Buffer.concat([d.update(Buffer.from(data, 'base64url')), d.final()]).toString('utf8');
}

const definitionOf = (r: OutputRecord, secret: string | null): OutputDefinition => ({
  id: r.id, tenantId: r.tenantId, name: r.name, config: { type: r.type, ...r.config } as OutputConfig,
  filter: { minPriority: r.minPriority as Priority | null, rules: r.rules }, secret,
});

export class AlertOutputs {
  readonly dispatcher: AlertDispatcher;
  /** Tenant outputs may name loopback and private addresses (tests, closed labs). */
  readonly allowPrivateTargets: boolean;
  readonly #records: OutputRecords;
  readonly #key: Buffer;
  readonly #sinkOptions: Pick<DispatcherOptions, 'fileRoot' | 'allowPrivateTargets'>;
  /** Outputs in the store that cannot run, and why (shown as their error). */
  readonly #broken = new Map<string, string>();

  constructor(opts: { records: OutputRecords; key: Buffer } & DispatcherOptions) {
    this.allowPrivateTargets = opts.allowPrivateTargets ?? false;
    this.#records = opts.records;
    this.#key = opts.key;
    this.#sinkOptions = { fileRoot: opts.fileRoot, allowPrivateTargets: this.allowPrivateTargets };
    this.dispatcher = new AlertDispatcher(opts);
  }

  /** Stores a new output (call inside the API's transaction, then `sync`); a webhook's secret is returned this once. */
  create(tenantId: string | null, spec: OutputSpec): { output: OutputView; secret: string | null } {
    const secret = spec.config.type === 'webhook' ? `whsec_${randomBytes(32).toString('base64url')}` : null;
    const { type, ...config } = spec.config;
    const record = this.#records.create({
      tenantId, name: spec.name, type, config, minPriority: spec.filter.minPriority, rules: spec.filter.rules,
      sealedSecret: secret === null ? null : seal(this.#key, secret),
    });
    return { output: this.#view(record), secret };
  }

  list(tenantId: string | null): OutputView[] {
    return this.#records.list(tenantId).map((r) => this.#view(r));
  }

  get(tenantId: string | null, name: string): OutputView | null {
    const r = this.#records.get(tenantId, name);
    return r ? this.#view(r) : null;
  }

  /** Removes the record (inside the API's transaction, then `sync`). */
  delete(id: string): void {
    this.#records.delete(id);
  }

  /** Runs exactly the outputs the store holds now (after a change, a tenant's removal, at start). */
  sync(): void {
    const defs: OutputDefinition[] = [];
    this.#broken.clear();
    for (const r of this.#records.list()) {
      try {
        const def = definitionOf(r, r.sealedSecret === null ? null : unseal(this.#key, r.sealedSecret));
        makeSink(def, this.#sinkOptions); // a definition no sink can be made of (a tenant's file) never runs
        defs.push(def);
      } catch (e) {
        // One output that cannot run (its secret sealed under another key — a lost outputs-key) must not stop the daemon or the others.
        this.#broken.set(r.id, `cannot run: ${(e as Error).message}`);
      }
    }
    this.dispatcher.set(defs);
  }

  /** Sends a sample alert through the output once, now; the answer says whether it arrived. */
  test(tenantId: string | null, name: string, alert: Alert): Promise<Attempt> | null {
    const r = this.#records.get(tenantId, name);
    if (!r) return null;
    const broken = this.#broken.get(r.id);
    if (broken) return Promise.resolve({ ok: false, error: broken, retry: false });
    return this.dispatcher.test(definitionOf(r, r.sealedSecret === null ? null : unseal(this.#key, r.sealedSecret)), alert);
  }

  /** The actuator's channel beyond the log and the stream. Never waits, never throws. */
  deliver(alert: Alert): void {
    try {
      this.dispatcher.deliver(alert);
    } catch {
      // Nothing in deliver should throw; if it ever did, the guard's path must not see it.
    }
  }

  close(): Promise<void> {
    return this.dispatcher.close();
  }

  #view(r: OutputRecord): OutputView {
    const d = definitionOf(r, null);
    return {
      id: r.id, tenantId: r.tenantId, name: r.name, config: d.config, filter: d.filter, createdAt: r.createdAt,
      stats: this.dispatcher.stats(r.id), error: this.#broken.get(r.id) ?? null,
    };
  }
}
