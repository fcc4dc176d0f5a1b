/**
 * `npm run bench -- os-proxy [--seconds=10] [--connections=32] [--json]`:
 * requests per second through the gateway, by hostname, into a container of the
 * built-in `node` image (its tiny HTTP server), against the same server started
 * on the host and hit directly — what the container and the gateway hop cost
 * together. Both driven by wrk over loopback keep-alive in the same run.
 * Requires root, wrk and the built-in images (the setup steps).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startGateway, type Gateway } from '../src/gateway/index.js';
import { OsDriver } from '../src/levels/os/driver.js';
import { intOption, type Bench } from './harness.js';
import { requireTools, wrk } from './load.js';

const HOST = 'node.bench.test';
/** The same one-line server the `node` image runs (src/levels/os/builtin-images.ts), on a free port. */
const HOST_SERVER = "const s=require('http').createServer((q,r)=>r.end('node ok\\n')).listen(0,'127.0.0.1',()=>console.log(s.address().port))";

const bench: Bench = async (opts) => {
  const seconds = intOption(opts, 'seconds', 10);
  const connections = intOption(opts, 'connections', 32);
  requireTools('wrk');
  const stateDir = await mkdtemp(join(tmpdir(), 'strata-bench-osproxy-'));
  const driver = new OsDriver({ stateDir, runRoot: '/run/strata-bench/os', cgroupRoot: 'strata-bench-os', subnet: '10.199.0.0/16', idBase: 3_000_000_000, tag: 'bo', hostPorts: [] });
  let gateway: Gateway | null = null;
  let hostServer: ChildProcess | null = null;
  try {
    const availability = await driver.provision();
    if (!availability.available) throw new Error(`the os level is not available: ${availability.reason}`);
    await driver.create({ id: 'proxy', tenantId: 'bench', name: 'proxy', level: 'os', source: 'node', limits: { vcpus: 2, memoryMiB: 256, diskMiB: 64 }, config: {} });
    await driver.start('proxy');
    const { address, port } = await driver.address('proxy');
    gateway = await startGateway({
      listeners: [{ id: 'http', address: '127.0.0.1', port: 0, protocol: 'http' }],
      sites: [{ hostname: HOST, tenantId: 'bench', target: { kind: 'upstream', host: address, port: port ?? 8080 } }],
    });
    const gatewayUrl = `http://127.0.0.1:${gateway.addresses()[0]!.port}/`;
    hostServer = spawn(process.execPath, ['-e', HOST_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
    const hostPort = Number(await new Promise<string>((resolve) => createInterface({ input: hostServer!.stdout! }).once('line', resolve)));

    const load = async (url: string, s: number, host?: string) =>
      (await wrk(url, { seconds: s, connections, threads: 2, ...(host ? { host } : {}) })).requestsPerSecond;
    await load(gatewayUrl, 2, HOST); // warm up both
    await load(`http://127.0.0.1:${hostPort}/`, 2);
    const throughGateway = await load(gatewayUrl, seconds, HOST);
    const onHost = await load(`http://127.0.0.1:${hostPort}/`, seconds);
    return {
      metric: 'req/s through the gateway into an os container (node image server)',
      unit: 'req/s',
      value: throughGateway,
      anchor: 'the same Node.js server on the host, hit directly',
      anchor_value: onHost,
      summary: [
        `wrk -t2 -c${connections}, ${seconds} s each; ${availability.reason}`,
        `through the gateway into the container: ${throughGateway.toFixed(0)} req/s; same server on the host: ${onHost.toFixed(0)} req/s`,
      ],
      extra: { connections, seconds },
    };
  } finally {
    hostServer?.kill();
    await gateway?.close();
    await driver.stop('proxy', { graceMs: 0 }).catch(() => undefined);
    await driver.delete('proxy').catch(() => undefined);
    await driver.cleanup();
    await rm(stateDir, { recursive: true, force: true });
  }
};

export default bench;
