/**
 * TLS passthrough (SNI routing of raw TLS streams) through the gateway, against
 * nginx's `stream` module with `ssl_preread` routing by the same name to the
 * same backend, with the same number of worker processes, driven by the same
 * `wrk` commands. Two figures, both reported:
 *
 * - throughput (the headline): MB/s of a large download over a few keep-alive
 *   TLS connections — for a passthrough proxy the cost is copying bytes;
 * - connections/s: a new TLS connection per request (`Connection: close`),
 *   each fetching a few bytes — accept, ClientHello read, route, upstream
 *   connect. The TLS handshakes happen in wrk and the backend, not in either
 *   proxy, so this figure is bounded by them and differences stay small.
 *
 * Setup, all on loopback: the backend is nginx (one worker) serving HTTPS with
 * an ECDSA P-256 certificate for `localhost` (wrk takes SNI from its URL);
 * both proxies route `localhost` to it and refuse other names. Rounds
 * alternate nginx and gateway after a warm-up, and the medians are reported.
 *
 * CPU per connection: over each connections/s run, the CPU time the proxy's
 * processes used (/proc/PID/stat: the gateway's workers; nginx's master and
 * workers) divided by the connections made — a figure that, unlike the rate,
 * hardly moves with other load on the machine. Likewise CPU-µs per MiB over
 * the throughput runs.
 *
 * Options: --seconds=N per round (default 5), --rounds=N (default 3),
 * --connections=N for connections/s (default 32), --streams=N for
 * throughput (default 4), --size-mib=N of the large file (default 32),
 * --workers=N for both proxies (default: the number of cores).
 *
 * Needs nginx with the stream module (Debian: libnginx-mod-stream), wrk and openssl.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway } from '../src/gateway/index.js';
import { Nginx, nginxVersion } from './gateway-http.js';
import { intOption, type BenchOptions, type BenchResult } from './harness.js';
import { gatewayWorkerPids, median, requireTools, round2, selfSignedEcCert, withCpu, wrk } from './load.js';
import { freePort } from '../test/support/net.js';

const STREAM_MODULE = '/usr/lib/nginx/modules/ngx_stream_module.so';
const NAME = 'localhost';

export default async function gatewayPassthrough(opts: BenchOptions): Promise<BenchResult> {
  requireTools('nginx', 'wrk');
  if (!existsSync(STREAM_MODULE)) throw new Error(`nginx stream module missing (${STREAM_MODULE}; Debian package libnginx-mod-stream)`);
  const seconds = intOption(opts, 'seconds', 5);
  const rounds = intOption(opts, 'rounds', 3);
  const connections = intOption(opts, 'connections', 32);
  const streams = intOption(opts, 'streams', 4);
  const sizeMiB = intOption(opts, 'size-mib', 32);
  const workers = intOption(opts, 'workers', availableParallelism());
  const threads = 2;
  const loadBefore = loadavg()[0]!;

  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-passthrough-'));
  const cert = selfSignedEcCert(dir, 'backend', [NAME]);
  writeFileSync(join(dir, 'big.bin'), randomBytes(sizeMiB * 2 ** 20), { mode: 0o644 });
  chmodSync(dir, 0o755); // nginx's workers run as nobody

  const [backendPort, nginxPort] = [await freePort(), await freePort()];
  const backend = await Nginx.start('tls-backend', `  server {
    listen 127.0.0.1:${backendPort} ssl;
    ssl_certificate ${cert.certPath};
    ssl_certificate_key ${cert.keyPath};
    ssl_protocols TLSv1.2 TLSv1.3;
    keepalive_requests 1000000;
    location = / { return 200 "hello from backend\\n"; }
    location = /big.bin { root ${dir}; }
  }`, 1, backendPort);
  const nginx = await Nginx.start('stream', '', workers, nginxPort, `load_module ${STREAM_MODULE};
stream {
  map $ssl_preread_server_name $passthrough_to {
    ${NAME} 127.0.0.1:${backendPort};
    default 127.0.0.1:1;
  }
  server {
    listen 127.0.0.1:${nginxPort};
    ssl_preread on;
    proxy_pass $passthrough_to;
  }
}`);
  const gateway = await startGateway({
    listeners: [{ id: 'pt', address: '127.0.0.1', port: 0, protocol: 'tls-passthrough' }],
    sites: [{ hostname: NAME, tenantId: 'bench', listeners: ['pt'], target: { kind: 'upstream', host: '127.0.0.1', port: backendPort } }],
  }, { workers });
  const urls = { gateway: `https://${NAME}:${gateway.addresses()[0]!.port}`, nginx: `https://${NAME}:${nginxPort}` };

  const ours = { conn: [] as number[], mbps: [] as number[], cpuConn: [] as number[], cpuMiB: [] as number[] };
  const theirs = { conn: [] as number[], mbps: [] as number[], cpuConn: [] as number[], cpuMiB: [] as number[] };
  const gatewayPids = gatewayWorkerPids();
  const connLoad = { seconds, connections, threads, close: true };
  const bigLoad = { seconds, connections: streams, threads: Math.min(threads, streams), close: false };
  try {
    for (const url of [urls.nginx, urls.gateway]) {
      await wrk(`${url}/`, { ...connLoad, seconds: 1 });
      await wrk(`${url}/big.bin`, { ...bigLoad, seconds: 1 });
    }
    for (let r = 0; r < rounds; r++) {
      for (const [url, into, pids] of [[urls.nginx, theirs, () => nginx.pids()], [urls.gateway, ours, () => gatewayPids]] as const) {
        const conn = await withCpu(pids(), () => wrk(`${url}/`, connLoad));
        into.conn.push(conn.wrk.requestsPerSecond);
        into.cpuConn.push(conn.cpuMicrosPerRequest);
        const big = await withCpu(pids(), () => wrk(`${url}/big.bin`, bigLoad));
        into.mbps.push(big.wrk.megabytesPerSecond);
        // Per request here is per sizeMiB downloaded.
        into.cpuMiB.push(big.cpuMicrosPerRequest / sizeMiB);
      }
    }
  } finally {
    await gateway.close();
    await nginx.stop();
    await backend.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const value = median(ours.mbps);
  const anchor = median(theirs.mbps);
  const conn = median(ours.conn);
  const anchorConn = median(theirs.conn);
  const loadAfter = loadavg()[0]!;
  return {
    metric: 'TLS passthrough throughput (SNI-routed, large download)',
    unit: 'MB/s',
    value: round2(value),
    anchor: `nginx ${nginxVersion()} stream + ssl_preread, ${workers} workers, same TLS backend and wrk`,
    anchor_value: round2(anchor),
    summary: [
      `${workers} workers each; backend nginx HTTPS (1 worker, ECDSA P-256); ${rounds} rounds alternating, ${seconds} s each, medians`,
      `throughput (${streams} keep-alive streams, ${sizeMiB} MiB file): gateway ${ours.mbps.map(Math.round).join(', ')} MB/s; nginx ${theirs.mbps.map(Math.round).join(', ')} MB/s`,
      `new TLS connections/s (${connections} wrk connections, Connection: close): gateway ${ours.conn.map(Math.round).join(', ')}; nginx ${theirs.conn.map(Math.round).join(', ')} (ratio ${(conn / anchorConn).toFixed(2)})`,
      `CPU-µs per connection: gateway ${ours.cpuConn.map(Math.round).join(', ')}; nginx ${theirs.cpuConn.map(Math.round).join(', ')} (ratio ${(median(ours.cpuConn) / median(theirs.cpuConn)).toFixed(2)}, lower is better); ` +
        `CPU-µs per MiB: gateway ${ours.cpuMiB.map(Math.round).join(', ')}; nginx ${theirs.cpuMiB.map(Math.round).join(', ')}`,
      `load average (1 min) before ${loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}`,
    ],
    extra: {
      connections_per_second: Math.round(conn), anchor_connections_per_second: Math.round(anchorConn), connections_ratio: round2(conn / anchorConn),
      cpu_us_per_connection: Math.round(median(ours.cpuConn)), anchor_cpu_us_per_connection: Math.round(median(theirs.cpuConn)),
      cpu_connection_ratio: round2(median(ours.cpuConn) / median(theirs.cpuConn)),
      cpu_us_per_mib: Math.round(median(ours.cpuMiB)), anchor_cpu_us_per_mib: Math.round(median(theirs.cpuMiB)),
      rounds_mbps: ours.mbps.map(round2), rounds_anchor_mbps: theirs.mbps.map(round2),
      rounds_conn: ours.conn.map(Math.round), rounds_anchor_conn: theirs.conn.map(Math.round),
      workers, connections, streams, size_mib: sizeMiB, seconds, rounds,
      loadavg_before: round2(loadBefore), loadavg_after: round2(loadAfter),
    },
  };
}
