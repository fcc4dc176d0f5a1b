/**
 * New TLS handshakes per second (TLS 1.3, ECDSA P-256 certificate chosen by
 * SNI, no resumption) through the gateway, against nginx (Debian's) with the
 * same certificate and worker count, both driven by the same client.
 *
 * The client: Node.js worker threads, each keeping `connections / threads`
 * handshakes in flight. One handshake = connect, full TLS 1.3 handshake (no
 * session offered, so never resumed), then an orderly close that the server
 * must answer: the client sends close_notify + FIN and counts the handshake
 * once the server closes too, so the server has processed the client's
 * Finished (a client counting at its own `secureConnect` would count
 * handshakes the server never finished). nginx has session tickets and the
 * session cache off; the gateway's tickets are never used by a client that
 * offers no session.
 *
 * Options: --seconds=N per round (default 5), --rounds=N (default 3),
 * --connections=N in flight (default 32), --threads=N client threads
 * (default 2), --workers=N for both servers (default: the number of cores).
 *
 * Needs the Debian packages nginx (nginx-light is enough) and openssl.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { startGateway } from '../src/gateway/index.js';
import { Nginx, nginxVersion } from './gateway-http.js';
import { intOption, type BenchOptions, type BenchResult } from './harness.js';
import { median, requireTools, round2, selfSignedEcCert } from './load.js';
import { freePort } from '../test/support/net.js';

const NAME = 'handshake.bench.test';

/** Runs in worker threads: full handshakes in a loop, counted when the server has closed its side. */
const CLIENT = `
const { workerData, parentPort } = require('node:worker_threads');
const tls = require('node:tls');
const { port, name, connections, seconds } = workerData;
let done = 0, errors = 0, open = 0;
const deadline = Date.now() + seconds * 1000;
function run() {
  open++;
  let secure = false;
  const s = tls.connect({ host: '127.0.0.1', port, servername: name, rejectUnauthorized: false,
    minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] });
  s.on('secureConnect', () => { secure = true; s.end(); });
  s.on('data', () => {});
  s.on('error', () => {});
  s.on('close', () => {
    open--;
    if (secure) done++; else errors++;
    if (Date.now() < deadline) run();
    else if (open === 0) parentPort.postMessage({ done, errors });
  });
}
for (let i = 0; i < connections; i++) run();
`;

async function handshakes(port: number, o: { seconds: number; connections: number; threads: number }): Promise<number> {
  const per = Math.max(1, Math.ceil(o.connections / o.threads));
  const results = await Promise.all(Array.from({ length: o.threads }, () => new Promise<{ done: number; errors: number }>((resolve, reject) => {
    const w = new Worker(CLIENT, { eval: true, workerData: { port, name: NAME, connections: per, seconds: o.seconds } });
    w.once('message', (m: { done: number; errors: number }) => { void w.terminate(); resolve(m); });
    w.once('error', reject);
  })));
  const errors = results.reduce((a, r) => a + r.errors, 0);
  const done = results.reduce((a, r) => a + r.done, 0);
  if (errors > done / 100) throw new Error(`handshake client: ${errors} failed handshakes (${done} done)`);
  return done / o.seconds;
}

export default async function gatewayHandshake(opts: BenchOptions): Promise<BenchResult> {
  requireTools('nginx', 'openssl');
  const seconds = intOption(opts, 'seconds', 5);
  const rounds = intOption(opts, 'rounds', 3);
  const connections = intOption(opts, 'connections', 32);
  const threads = intOption(opts, 'threads', 2);
  const workers = intOption(opts, 'workers', availableParallelism());
  const load = { seconds, connections, threads };
  const loadBefore = loadavg()[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-handshake-'));
  const cert = selfSignedEcCert(dir, 'bench', [NAME]);

  const [backendPort, nginxPort] = [await freePort(), await freePort()];
  const ours: number[] = [];
  const theirs: number[] = [];
  const backend = await Nginx.start('backend', `  server { listen 127.0.0.1:${backendPort}; location / { return 200 "hello from backend\\n"; } }`, 1, backendPort);
  const stops: Array<() => Promise<void>> = [() => backend.stop()];
  try {
    const nginx = await Nginx.start('handshake', `  ssl_protocols TLSv1.3;
  ssl_session_tickets off;
  ssl_session_cache off;
  server {
    listen 127.0.0.1:${nginxPort} ssl default_server;
    server_name ${NAME};
    ssl_certificate ${cert.certPath};
    ssl_certificate_key ${cert.keyPath};
    location / { proxy_pass http://127.0.0.1:${backendPort}; }
  }`, workers, nginxPort);
    stops.push(() => nginx.stop());
    const gateway = await startGateway({
      listeners: [{ id: 'tls', address: '127.0.0.1', port: 0, protocol: 'https' }],
      sites: [{ hostname: NAME, tenantId: 'bench', target: { kind: 'upstream', host: '127.0.0.1', port: backendPort } }],
      certificates: [{ id: 'bench', hostnames: [NAME], tenantId: 'bench', certPem: cert.certPem, keyPem: cert.keyPem }],
    }, { workers });
    stops.push(() => gateway.close());
    const gatewayPort = gateway.addresses()[0]!.port;

    await handshakes(nginxPort, { ...load, seconds: 2 });
    await handshakes(gatewayPort, { ...load, seconds: 2 });
    for (let r = 0; r < rounds; r++) {
      theirs.push(await handshakes(nginxPort, load));
      ours.push(await handshakes(gatewayPort, load));
    }
  } finally {
    for (const stop of stops.reverse()) await stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const value = median(ours);
  const anchor = median(theirs);
  const loadAfter = loadavg()[0]!;
  return {
    metric: 'new TLS 1.3 handshakes per second (ECDSA P-256, SNI, no resumption)',
    unit: 'handshakes/s',
    value: Math.round(value),
    anchor: `nginx ${nginxVersion()} ssl (tickets and session cache off), ${workers} workers, same certificate and client`,
    anchor_value: Math.round(anchor),
    summary: [
      `Node client: ${threads} threads, ${connections} handshakes in flight, ${seconds} s rounds, ${rounds} rounds alternating, medians; ${workers} workers each`,
      `gateway: ${ours.map(Math.round).join(', ')} handshakes/s`,
      `nginx:   ${theirs.map(Math.round).join(', ')} handshakes/s`,
      `load average (1 min) before ${loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}`,
    ],
    extra: {
      workers, connections, threads, seconds, rounds,
      rounds_value: ours.map(Math.round), rounds_anchor: theirs.map(Math.round),
      loadavg_before: round2(loadBefore), loadavg_after: round2(loadAfter),
    },
  };
}
