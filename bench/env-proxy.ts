/**
 * Requests per second to a hello handler running as an env instance, through
 * the gateway by hostname (gateway → the instance's loopback port → supervisor →
 * isolate host → isolate, and back), against the same handler as a plain Node.js
 * http server in its own process. The instance's port is also measured
 * directly, to show what the gateway hop costs. All are driven by wrk over
 * loopback keep-alive connections.
 *
 * The anchor is measured in the same run. Options: --seconds=N (default 10),
 * --connections=N (default 32).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startGateway, type Gateway } from '../src/gateway/index.js';
import { EnvDriver } from '../src/levels/env/index.js';
import { intOption, type BenchOptions, type BenchResult } from './harness.js';
import { requireTools, wrk } from './load.js';

const HOST = 'hello.bench.test';
const HANDLER = `export default { fetch(request) { return new Response('hello ' + new URL(request.url).pathname) } }`;
const PLAIN_SERVER = `
const http = require('node:http');
const s = http.createServer((req, res) => { res.setHeader('content-type', 'text/plain;charset=UTF-8'); res.end('hello ' + new URL(req.url, 'http://x').pathname); });
s.keepAliveTimeout = 5000;
s.listen(0, '127.0.0.1', () => console.log(s.address().port));`;

/** req/s from wrk over keep-alive connections; `host` sets the Host header. */
const load = async (url: string, seconds: number, connections: number, host?: string): Promise<number> =>
  (await wrk(url, { seconds, connections, threads: 2, ...(host ? { host } : {}) })).requestsPerSecond;

export default async function envProxy(opts: BenchOptions): Promise<BenchResult> {
  requireTools('wrk');
  const seconds = intOption(opts, 'seconds', 10);
  const connections = intOption(opts, 'connections', 32);
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-env-'));
  const driver = new EnvDriver({ stateDir: dir, hosts: 1 });
  let plain: ChildProcess | null = null;
  let gateway: Gateway | null = null;
  try {
    const availability = await driver.provision();
    if (!availability.available) throw new Error(availability.reason);
    await driver.create({ id: 'hello', tenantId: 'bench', name: 'hello', level: 'env', source: null, limits: { vcpus: 1, memoryMiB: 64, diskMiB: 1 }, config: { code: HANDLER, concurrency: 256 } });
    await driver.start('hello');
    const envPort = (await driver.inspect('hello'))!.info!.port as number;

    plain = spawn(process.execPath, ['-e', PLAIN_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    const plainPort = Number(await new Promise<string>((resolve) => createInterface({ input: plain!.stdout! }).once('line', resolve)));

    gateway = await startGateway({
      listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }],
      sites: [{ hostname: HOST, tenantId: 'bench', target: { kind: 'upstream', host: '127.0.0.1', port: envPort } }],
    });
    const gatewayUrl = `http://127.0.0.1:${gateway.addresses()[0]!.port}/`;
    await load(gatewayUrl, 2, connections, HOST);
    const envRps = await load(gatewayUrl, seconds, connections, HOST);
    const directRps = await load(`http://127.0.0.1:${envPort}/`, seconds, connections);
    await load(`http://127.0.0.1:${plainPort}/`, 2, connections);
    const plainRps = await load(`http://127.0.0.1:${plainPort}/`, seconds, connections);
    return {
      metric: 'hello handler req/s through the gateway by hostname (loopback keep-alive)',
      unit: 'req/s',
      value: envRps,
      anchor: 'the same handler as a plain Node.js http server',
      anchor_value: plainRps,
      summary: [
        `load generator: wrk -t2, ${connections} connections, ${seconds} s each`,
        `env instance through the gateway: ${envRps.toFixed(0)} req/s; at its port directly: ${directRps.toFixed(0)} req/s; plain Node.js server: ${plainRps.toFixed(0)} req/s`,
      ],
      extra: { connections, seconds, generator: 'wrk', direct_rps: directRps },
    };
  } finally {
    plain?.kill();
    await gateway?.close();
    await driver.cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
}
