/**
 * Shared by the env tests: a provisioned EnvDriver on a temp state dir (removed
 * with everything the driver started by `close()`), instance launch by code,
 * and small HTTP helpers that talk to an instance's loopback port.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvDriver, type EnvDriverOptions } from '../../../src/levels/env/index.js';
import type { InstanceSpec } from '../../../src/levels/driver.js';

export interface TestEnv {
  driver: EnvDriver;
  dir: string;
  close(): Promise<void>;
}

export async function startEnv(opts: EnvDriverOptions = {}): Promise<TestEnv> {
  const dir = mkdtempSync(join(tmpdir(), 'strata-env-'));
  const driver = new EnvDriver({ stateDir: dir, ...opts });
  const availability = await driver.provision();
  if (!availability.available) {
    await driver.cleanup();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(`env driver unavailable: ${availability.reason}`);
  }
  return {
    driver,
    dir,
    async close() {
      await driver.cleanup();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function specFor(id: string, tenantId: string, code: string, config: Record<string, unknown> = {}, limits: Partial<InstanceSpec['limits']> = {}): InstanceSpec {
  return {
    id, tenantId, name: id, level: 'env', source: null,
    limits: { vcpus: 1, memoryMiB: 64, diskMiB: 1, ...limits },
    config: { code, ...config },
  };
}

export interface Launched {
  id: string;
  port: number;
  url: string;
}

/** Creates and starts an instance running `code`; returns its address. */
export async function launch(env: TestEnv, tenantId: string, code: string, config: Record<string, unknown> = {}, limits: Partial<InstanceSpec['limits']> = {}): Promise<Launched> {
  const id = `${tenantId}-${randomUUID().slice(0, 8)}`;
  await env.driver.create(specFor(id, tenantId, code, config, limits));
  await env.driver.start(id);
  const port = (await env.driver.inspect(id))!.info!.port as number;
  return { id, port, url: `http://127.0.0.1:${port}` };
}

export interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

const agent = new Agent({ keepAlive: true, maxSockets: 64 });

/** One HTTP request over a shared keep-alive agent. */
export function http(url: string, opts: { method?: string; body?: string; headers?: Record<string, string>; timeoutMs?: number } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent, timeout: opts.timeoutMs ?? 20_000 }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timeout: ${url}`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The instance's log entries. */
export function logOf(env: TestEnv, id: string): Array<{ source: string; level: string; message: string }> {
  try {
    return readFileSync(join(env.dir, 'instances', id, 'log.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
  } catch {
    return [];
  }
}

/**
 * Sends requests to `url` back to back with `concurrency` in flight until `stop()`
 * resolves; counts what came back. Used to show a neighbour keeps serving.
 */
export async function loadWhile(url: string, concurrency: number, during: () => Promise<void>): Promise<{ ok: number; failed: Array<string> }> {
  let running = true;
  const result = { ok: 0, failed: [] as string[] };
  const worker = async (): Promise<void> => {
    while (running) {
      try {
        const r = await http(url, { timeoutMs: 10_000 });
        if (r.status === 200) result.ok++;
        else result.failed.push(`${r.status} ${r.body.slice(0, 80)}`);
      } catch (e) {
        result.failed.push((e as Error).message);
      }
    }
  };
  const workers = Array.from({ length: concurrency }, worker);
  try {
    await during();
  } finally {
    running = false;
    await Promise.all(workers);
  }
  return result;
}

export const HELLO = `export default { async fetch(request) { return new Response('hello ' + new URL(request.url).pathname) } }`;
