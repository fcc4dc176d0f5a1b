/**
 * HTTPS keep-alive requests per second through the gateway with 100
 * certificates chosen by SNI, against nginx (Debian's) terminating TLS for the
 * same 100 names (one `server` block and certificate each) and proxying to the
 * same backend with the same number of worker processes. Figures provisional.
 *
 * Two drivers, each run against both proxies in alternating rounds (medians):
 *
 * - `wrk` (the headline figure): wrk takes its SNI name from the URL, which must
 *   resolve, and only `localhost` does here (no /etc/hosts entries of our own);
 *   so wrk's connections all name `localhost`, one of the 100 configured names.
 *   This measures the TLS keep-alive hot path with 100 certificates loaded.
 * - a Node.js client in worker threads whose connections cycle over all 100
 *   names (SNI and Host), one request in flight each: slower than wrk (it shares
 *   the cores), but every name's certificate and site are exercised.
 *
 * Setup, all on loopback: backend nginx (1 worker, `return 200`, 20 bytes);
 * ECDSA P-256 certificates from the openssl CLI; TLS 1.3 on both sides; nginx
 * with an upstream keep-alive pool, `keepalive_requests` raised so that neither
 * proxy closes a client connection during a round, access logs off on both.
 *
 * CPU per request, as in gateway-http: each round also runs wrk -t1 with
 * --cpu-connections (default 8) for --cpu-seconds (default 5) against both and
 * charges their processes' CPU time to the requests done (and the saturating
 * wrk rounds too).
 *
 * Options: --seconds=N per round (default 10), --rounds=N (default 3),
 * --connections=N (default 64), --threads=N wrk and client threads (default 2),
 * --workers=N for both proxies (default: the number of cores), --names=N (default 100).
 *
 * Needs the Debian packages nginx (nginx-light is enough), wrk and openssl.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { startGateway, type CertificateConfig, type SiteRoute } from '../src/gateway/index.js';
import { NGINX_PROXY_LOCATION, Nginx, cpuFields, cpuLine, nginxVersion, type CpuRounds } from './gateway-http.js';
import { gatewayWorkerPids, median, requireTools, round2, selfSignedEcCert, withCpu, wrk, type WrkResult } from './load.js';
import { freePort } from '../test/support/net.js';
import { intOption, type BenchOptions, type BenchResult } from './harness.js';

/** The multi-name client, run in worker threads: counts complete responses over `seconds`. */
const CLIENT = `
const { workerData, parentPort } = require('node:worker_threads');
const tls = require('node:tls');
const { port, names, connections, seconds } = workerData;
let done = 0, errors = 0, stop = false, open = 0;
const deadline = Date.now() + seconds * 1000;
function run(i) {
  const name = names[i % names.length];
  const req = Buffer.from('GET / HTTP/1.1\\r\\nHost: ' + name + '\\r\\n\\r\\n');
  const s = tls.connect({ host: '127.0.0.1', port, servername: name, rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] });
  open++;
  let buf = '';
  s.on('secureConnect', () => s.write(req));
  s.on('data', (d) => {
    buf += d.toString('latin1');
    for (;;) {
      const end = buf.indexOf('\\r\\n\\r\\n');
      if (end < 0) return;
      const m = /content-length: *(\\d+)/i.exec(buf.slice(0, end));
      const len = m ? Number(m[1]) : 0;
      if (buf.length < end + 4 + len) return;
      if (!buf.startsWith('HTTP/1.1 200')) errors++; else done++;
      buf = buf.slice(end + 4 + len);
      if (Date.now() >= deadline) { s.destroy(); return; }
      s.write(req);
    }
  });
  s.on('error', () => { errors++; });
  s.on('close', () => { open--; if (Date.now() < deadline) run(i); else if (open === 0) parentPort.postMessage({ done, errors }); });
}
for (let i = 0; i < connections; i++) run(workerData.offset + i);
`;

async function multiNameClient(port: number, names: string[], o: { seconds: number; connections: number; threads: number }): Promise<number> {
  const per = Math.ceil(o.connections / o.threads);
  const results = await Promise.all(Array.from({ length: o.threads }, (_, t) => new Promise<{ done: number; errors: number }>((resolve, reject) => {
    const w = new Worker(CLIENT, { eval: true, workerData: { port, names, connections: per, seconds: o.seconds, offset: t * per } });
    w.once('message', (m: { done: number; errors: number }) => { void w.terminate(); resolve(m); });
    w.once('error', reject);
  })));
  const errors = results.reduce((a, r) => a + r.errors, 0);
  if (errors > 0) throw new Error(`multi-name client: ${errors} errors`);
  return results.reduce((a, r) => a + r.done, 0) / o.seconds;
}


export default async function gatewayTls(opts: BenchOptions): Promise<BenchResult> {
  requireTools('nginx', 'wrk');
  const seconds = intOption(opts, 'seconds', 10);
  const rounds = intOption(opts, 'rounds', 3);
  const connections = intOption(opts, 'connections', 64);
  const threads = intOption(opts, 'threads', 2);
  const workers = intOption(opts, 'workers', availableParallelism());
  const count = intOption(opts, 'names', 100);
  const cpuConnections = intOption(opts, 'cpu-connections', 8);
  const load = { seconds, connections, threads };
  const moderate = { seconds: intOption(opts, 'cpu-seconds', 5), connections: cpuConnections, threads: 1 };
  const loadBefore = loadavg()[0]!;

  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-tls-'));
  // 'localhost' is the one name wrk can resolve; the rest exist for SNI only.
  const names = ['localhost', ...Array.from({ length: count - 1 }, (_, i) => `s${i}.bench.test`)];
  const certs: CertificateConfig[] = names.map((name, i) => {
    const { certPem, keyPem } = selfSignedEcCert(dir, String(i), [name]);
    return { id: `c${i}`, hostnames: [name], certPem, keyPem, tenantId: `t${i}` };
  });

  const [backendPort, nginxPort] = [await freePort(), await freePort()];
  const backend = await Nginx.start('backend', `  server { listen 127.0.0.1:${backendPort}; location / { return 200 "hello from backend\\n"; } }`, 1, backendPort);
  const servers = names.map((name, i) => `  server {
    listen 127.0.0.1:${nginxPort} ssl${i === 0 ? ' default_server' : ''};
    server_name ${name};
    ssl_certificate ${join(dir, `${i}.crt`)};
    ssl_certificate_key ${join(dir, `${i}.key`)};
${NGINX_PROXY_LOCATION}
  }`).join('\n');
  const nginx = await Nginx.start('tls', `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 256; }
  ssl_protocols TLSv1.2 TLSv1.3;
  keepalive_requests 10000000;
  keepalive_timeout 60s;
${servers}`, workers, nginxPort);
  const sites: SiteRoute[] = names.map((hostname, i) => ({ hostname, tenantId: `t${i}`, target: { kind: 'upstream', host: '127.0.0.1', port: backendPort } }));
  const gateway = await startGateway({ listeners: [{ id: 'tls', address: '127.0.0.1', port: 0, protocol: 'https' }], sites, certificates: certs }, { workers });
  const gatewayPort = gateway.addresses()[0]!.port;

  const ours: WrkResult[] = [];
  const theirs: WrkResult[] = [];
  const oursMulti: number[] = [];
  const theirsMulti: number[] = [];
  const cpu: CpuRounds = { ours: [], theirs: [], oursSaturated: [], theirsSaturated: [] };
  const gatewayPids = gatewayWorkerPids();
  try {
    await wrk(`https://localhost:${nginxPort}/`, { ...load, seconds: 2 });
    await wrk(`https://localhost:${gatewayPort}/`, { ...load, seconds: 2 });
    for (let r = 0; r < rounds; r++) {
      const n = await withCpu(nginx.pids(), () => wrk(`https://localhost:${nginxPort}/`, load));
      const g = await withCpu(gatewayPids, () => wrk(`https://localhost:${gatewayPort}/`, load));
      theirs.push(n.wrk);
      ours.push(g.wrk);
      cpu.theirsSaturated.push(n.cpuMicrosPerRequest);
      cpu.oursSaturated.push(g.cpuMicrosPerRequest);
      cpu.theirs.push((await withCpu(nginx.pids(), () => wrk(`https://localhost:${nginxPort}/`, moderate))).cpuMicrosPerRequest);
      cpu.ours.push((await withCpu(gatewayPids, () => wrk(`https://localhost:${gatewayPort}/`, moderate))).cpuMicrosPerRequest);
      theirsMulti.push(await multiNameClient(nginxPort, names, load));
      oursMulti.push(await multiNameClient(gatewayPort, names, load));
    }
  } finally {
    await gateway.close();
    await nginx.stop();
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const value = median(ours.map((x) => x.requestsPerSecond));
  const anchor = median(theirs.map((x) => x.requestsPerSecond));
  const p99 = median(ours.map((x) => x.p99Ms));
  const anchorP99 = median(theirs.map((x) => x.p99Ms));
  const multi = median(oursMulti);
  const anchorMulti = median(theirsMulti);
  const loadAfter = loadavg()[0]!;
  return {
    metric: `HTTPS keep-alive requests per second, ${count} certificates by SNI (provisional)`,
    unit: 'req/s',
    value,
    anchor: `nginx ${nginxVersion()} ssl, ${count} server blocks, proxy_pass keepalive upstream, ${workers} workers, same backend and wrk`,
    anchor_value: anchor,
    summary: [
      `wrk -t${threads} -c${connections} -d${seconds}s (SNI localhost), ${rounds} rounds alternating, medians; ${workers} workers each`,
      `gateway: ${ours.map((x) => Math.round(x.requestsPerSecond)).join(', ')} req/s; p99 ${p99.toFixed(2)} ms`,
      `nginx:   ${theirs.map((x) => Math.round(x.requestsPerSecond)).join(', ')} req/s; p99 ${anchorP99.toFixed(2)} ms`,
      `Node client over all ${count} names: gateway ${oursMulti.map(Math.round).join(', ')} req/s; nginx ${theirsMulti.map(Math.round).join(', ')} req/s (ratio ${(multi / anchorMulti).toFixed(2)})`,
      cpuLine(cpuConnections, cpu),
      `load average (1 min) before ${loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}`,
    ],
    extra: {
      ...cpuFields(cpu),
      p99_ms: round2(p99), anchor_p99_ms: round2(anchorP99), workers, connections, threads, seconds, rounds, names: count,
      rounds_value: ours.map((x) => Math.round(x.requestsPerSecond)), rounds_anchor: theirs.map((x) => Math.round(x.requestsPerSecond)),
      multi_name_value: Math.round(multi), multi_name_anchor: Math.round(anchorMulti),
      loadavg_before: round2(loadBefore), loadavg_after: round2(loadAfter),
    },
  };
}
