/**
 * How long a route change takes to reach visitors, with 10,000 sites: the
 * gateway's live update (`update()`: one table built, swapped atomically on
 * every worker) against nginx (Debian's) reloading a config with as many
 * `server` blocks (SIGHUP: parse, new workers, old ones drain).
 *
 * Each round points one site (a different one each round) from one backend to
 * another and, from the
 * moment the change is issued, asks that name on fresh connections until
 * `--confirm` answers in a row come from the new backend — the time a visitor
 * could still reach the old one. Both proxies are measured the same way;
 * the gateway's acknowledgement time (when `update()` resolves, every worker
 * having swapped) is reported beside it. Rounds alternate; medians and p99.
 *
 * Options: --sites=N (default 10000), --rounds=N (default 10), --confirm=N
 * (default 6), --workers=N (default: the number of cores).
 *
 * Needs the Debian package nginx (nginx-light is enough).
 */
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { availableParallelism, loadavg } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway, type SiteRoute } from '../src/gateway/index.js';
import { NGINX_PROXY_LOCATION, Nginx, nginxVersion } from './gateway-http.js';
import { intOption, percentile, type BenchOptions, type BenchResult } from './harness.js';
import { median, requireTools, round2 } from './load.js';
import { freePort } from '../test/support/net.js';

const siteName = (i: number): string => `site${i}.live.test`;

/** A backend that answers its own name. */
async function backend(name: string): Promise<{ server: Server; port: number }> {
  const server = createServer((_req, res) => res.end(name));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

/** The body `host` gets from the proxy on `port`, on a connection of its own. */
function ask(port: number, host: string): Promise<string> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false, headers: { host, connection: 'close' }, timeout: 2_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { body += c; });
      res.on('end', () => resolve(body));
      res.on('error', () => resolve(''));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(''));
    req.end();
  });
}

/** Milliseconds from `start` until `confirm` answers in a row for `host` are `expected`. */
async function untilServed(start: number, port: number, host: string, expected: string, confirm: number): Promise<number> {
  let inRow = 0;
  for (let tries = 0; inRow < confirm; tries++) {
    if (performance.now() - start > 30_000) throw new Error(`${host} did not switch to ${expected} within 30 s`);
    inRow = (await ask(port, host)) === expected ? inRow + 1 : 0;
    if (inRow === 0 && tries > 0) await sleep(1);
  }
  return performance.now() - start;
}

function nginxSites(count: number, port: number, target: (i: number) => number): string {
  const servers: string[] = [];
  for (let i = 0; i < count; i++) {
    servers.push(`  server {
    listen 127.0.0.1:${port}${i === 0 ? ' default_server' : ''};
    server_name ${siteName(i)};
    set $backend 127.0.0.1:${target(i)};
${NGINX_PROXY_LOCATION.replace('http://backend', 'http://$backend')}
  }`);
  }
  return `  server_names_hash_max_size ${Math.max(512, count * 4)};
  server_names_hash_bucket_size 128;
${servers.join('\n')}`;
}

export default async function gatewayLive(opts: BenchOptions): Promise<BenchResult> {
  requireTools('nginx');
  const count = intOption(opts, 'sites', 10_000);
  const rounds = intOption(opts, 'rounds', 10);
  const confirm = intOption(opts, 'confirm', 6);
  const workers = intOption(opts, 'workers', availableParallelism());
  const loadBefore = loadavg()[0]!;

  const [alpha, beta] = [await backend('alpha'), await backend('beta')];
  const nginxPort = await freePort();
  // The changed site on beta when `toBeta`, every other site on alpha.
  const targetOf = (changed: number, toBeta: boolean) => (i: number): number => (i === changed && toBeta ? beta.port : alpha.port);
  const routes = (changed: number, toBeta: boolean): SiteRoute[] => Array.from({ length: count }, (_, i) => ({
    hostname: siteName(i), tenantId: `t${i % 100}`, target: { kind: 'upstream', host: '127.0.0.1', port: targetOf(changed, toBeta)(i) },
  }));
  const listeners = [{ id: 'v', address: '127.0.0.1', port: 0, protocol: 'http' as const }];
  const gateway = await startGateway({ listeners, sites: routes(0, false) }, { workers });
  const nginx = await Nginx.start('live', nginxSites(count, nginxPort, targetOf(0, false)), workers, nginxPort);
  const gatewayPort = gateway.addresses()[0]!.port;
  const served = { gateway: [] as number[], nginx: [] as number[] };
  const acked: number[] = [];
  try {
    for (let r = 1; r <= rounds; r++) {
      // Round r re-points site r to beta (every site starts on alpha), then puts it back, unmeasured.
      const changed = r % count;
      let start = performance.now();
      const update = gateway.update({ listeners, sites: routes(changed, true) }).then(() => performance.now() - start);
      served.gateway.push(await untilServed(start, gatewayPort, siteName(changed), 'beta', confirm));
      acked.push(await update);
      start = performance.now();
      nginx.reload(nginxSites(count, nginxPort, targetOf(changed, true)), workers);
      served.nginx.push(await untilServed(start, nginxPort, siteName(changed), 'beta', confirm));
      await gateway.update({ listeners, sites: routes(changed, false) });
      nginx.reload(nginxSites(count, nginxPort, targetOf(changed, false)), workers);
      await untilServed(performance.now(), nginxPort, siteName(changed), 'alpha', confirm);
      await untilServed(performance.now(), gatewayPort, siteName(changed), 'alpha', confirm);
    }
  } finally {
    await gateway.close();
    await nginx.stop();
    alpha.server.close();
    beta.server.close();
  }

  const sorted = { gateway: [...served.gateway].sort((a, b) => a - b), nginx: [...served.nginx].sort((a, b) => a - b), acked: [...acked].sort((a, b) => a - b) };
  const m = { gateway: median(served.gateway), nginx: median(served.nginx), acked: median(acked) };
  const loadAfter = loadavg()[0]!;
  const list = (xs: number[]): string => xs.map((x) => x.toFixed(1)).join(', ');
  return {
    metric: `route change → every fresh connection served by the new backend, ${count} sites (p50; lower is better)`,
    unit: 'ms',
    value: round2(m.gateway),
    anchor: `nginx ${nginxVersion()} reload (SIGHUP) of ${count} server blocks, ${workers} workers, measured the same way`,
    anchor_value: round2(m.nginx),
    summary: [
      `${rounds} rounds alternating, one site re-pointed per round, ${confirm} answers in a row on fresh connections; ${workers} workers each`,
      `gateway served new route after: ${list(served.gateway)} ms (p50 ${m.gateway.toFixed(1)}, p99 ${percentile(sorted.gateway, 99).toFixed(1)})`,
      `gateway update acknowledged by every worker after: ${list(acked)} ms (p50 ${m.acked.toFixed(1)})`,
      `nginx reload served new route after: ${list(served.nginx)} ms (p50 ${m.nginx.toFixed(1)}, p99 ${percentile(sorted.nginx, 99).toFixed(1)})`,
      `ratio below 1 means the gateway is faster; nginx/gateway: ${(m.nginx / m.gateway).toFixed(1)}×`,
      `load average (1 min) before ${loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}`,
    ],
    extra: {
      sites: count, rounds, confirm, workers,
      p99_ms: round2(percentile(sorted.gateway, 99)), anchor_p99_ms: round2(percentile(sorted.nginx, 99)),
      acked_p50_ms: round2(m.acked), acked_p99_ms: round2(percentile(sorted.acked, 99)),
      loadavg_before: round2(loadBefore), loadavg_after: round2(loadAfter),
    },
  };
}
