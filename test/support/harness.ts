/**
 * A daemon in a temp dir on a free loopback port, with a small HTTP client.
 * Tests get a provider-admin token and helpers to make tenants and their users.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { tenantDocroot } from '../../src/control/tenants/tenant-data.js';
import { startDaemon, type Daemon, type DaemonOptions } from '../../src/daemon.js';
import type { LevelDriver } from '../../src/levels/driver.js';

export interface ApiResponse<T = any> {
  status: number;
  body: T;
  headers: Headers;
}

export interface RequestOptions {
  token?: string | null;
  body?: unknown;
  /** Sent as-is, not JSON-encoded. */
  rawBody?: string;
  headers?: Record<string, string>;
}

export class TestDaemon {
  private constructor(readonly daemon: Daemon, readonly adminToken: string, private readonly ownsDir: boolean) {}

  static async start(opts: { drivers?: LevelDriver[]; dataDir?: string; gateway?: DaemonOptions['gateway']; guard?: DaemonOptions['guard']; outputs?: DaemonOptions['outputs']; metricsScrapeToken?: string } = {}): Promise<TestDaemon> {
    const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'strata-test-'));
    const daemon = await startDaemon({
      dataDir, host: '127.0.0.1', port: 0, drivers: opts.drivers ?? [], logger: pino({ level: 'silent' }),
      reconcileIntervalMs: 3_600_000, ...(opts.gateway ? { gateway: opts.gateway } : {}), ...(opts.guard ? { guard: opts.guard } : {}),
      ...(opts.outputs ? { outputs: opts.outputs } : {}), ...(opts.metricsScrapeToken ? { metricsScrapeToken: opts.metricsScrapeToken } : {}),
    });
    const token = readFileSync(daemon.tokenPath, 'utf8').trim();
    return new TestDaemon(daemon, token, !opts.dataDir);
  }

  get url(): string {
    return this.daemon.url;
  }

  async request<T = any>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    const headers: Record<string, string> = { ...opts.headers };
    const token = opts.token === undefined ? this.adminToken : opts.token;
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (opts.rawBody !== undefined) body = opts.rawBody;
    else if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const res = await fetch(`${this.url}${path}`, { method, headers, ...(body !== undefined ? { body } : {}) });
    const text = await res.text();
    let parsed: unknown = text;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      /* not JSON: keep the text */
    }
    return { status: res.status, body: parsed as T, headers: res.headers };
  }

  /** Creates a tenant and returns a token for a fresh user of `role` in it. */
  async tenantWithUser(tenant: string, role: 'tenant-admin' | 'tenant-member' = 'tenant-admin', quota?: object): Promise<string> {
    const t = await this.request('POST', '/v1/tenants', { body: { name: tenant, ...(quota ? { quota } : {}) } });
    if (t.status !== 201 && t.status !== 409) throw new Error(`tenant create: ${t.status} ${JSON.stringify(t.body)}`);
    return this.userToken(`${role}-${tenant}-${Math.random().toString(36).slice(2, 8)}`, role, tenant);
  }

  /** A tenant's docroot area on disk (by its id: `control/tenants/tenant-data.ts`). */
  docroot(tenant: string, ...below: string[]): string {
    const t = this.daemon.services.store.getTenantByName(tenant);
    if (!t) throw new Error(`no tenant '${tenant}'`);
    return join(tenantDocroot(this.daemon.dataDir, t.id), ...below);
  }

  async userToken(name: string, role: string, tenant?: string): Promise<string> {
    const u = await this.request('POST', '/v1/users', { body: { name, role, ...(tenant ? { tenant } : {}) } });
    if (u.status !== 201) throw new Error(`user create: ${u.status} ${JSON.stringify(u.body)}`);
    const t = await this.request('POST', '/v1/tokens', { body: { user: name } });
    if (t.status !== 201) throw new Error(`token create: ${t.status} ${JSON.stringify(t.body)}`);
    return t.body.secret as string;
  }

  async close(): Promise<void> {
    await this.daemon.close();
    if (this.ownsDir) rmSync(this.daemon.dataDir, { recursive: true, force: true });
  }
}
