/**
 * Proxied HTTP/1.1 keep-alive requests per second with 10,000 sites against
 * the same with 10, for the gateway and for nginx (Debian's) with as many
 * `server` blocks (its server-name hash tables sized to fit), same backend,
 * same worker count, same `wrk` command, side by side in one run.
 *
 * Requests spread over every configured name: a wrk Lua script builds one
 * request per name at start (so wrk's own cost does not depend on the count)
 * and each connection walks through them from its own random offset, so
 * consecutive requests name different sites, which is where a route table
 * that does not scale would show.
 *
 * The figure: the gateway's req/s at 10,000 sites; the anchor nginx's at
 * 10,000; both keep-up ratios (10,000 / 10) are in the summary (goal: the
 * gateway's ≥ 0.95× nginx's). Rounds alternate the four setups; medians.
 *
 * Options: --seconds=N per round (default 5), --rounds=N (default 3),
 * --connections=N (default 64), --threads=N (default 2), --workers=N
 * (default: the number of cores), --sites=N (default 10000), --few=N (default 10).
 *
 * Needs the Debian packages nginx (nginx-light is enough) and wrk.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { startGateway, type Gateway, type SiteRoute } from '../src/gateway/index.js';
import { NGINX_PROXY_LOCATION, Nginx, nginxVersion } from './gateway-http.js';
import { intOption, type BenchOptions, type BenchResult } from './harness.js';
import { median, requireTools, round2, wrk } from './load.js';
import { freePort } from '../test/support/net.js';

const siteName = (i: number): string => `site${i}.vhosts.test`;

/** A wrk script whose requests walk over `count` Host names. */
function hostScript(dir: string, count: number): string {
  const path = join(dir, `hosts-${count}.lua`);
  writeFileSync(path, `
local requests = {}
local i = 0
function init(args)
  for n = 0, ${count - 1} do
    requests[n + 1] = wrk.format("GET", "/", { ["Host"] = "site" .. n .. ".vhosts.test" })
  end
  i = math.random(${count})
end
function request()
  i = i % ${count} + 1
  return requests[i]
end
`);
  return path;
}

async function gatewayWith(count: number, backendPort: number, workers: number): Promise<Gateway> {
  const sites: SiteRoute[] = Array.from({ length: count }, (_, i) => ({
    hostname: siteName(i), tenantId: `t${i % 100}`, target: { kind: 'upstream', host: '127.0.0.1', port: backendPort },
  }));
  return startGateway({ listeners: [{ id: 'v', address: '127.0.0.1', port: 0, protocol: 'http' }], sites }, { workers });
}

async function nginxWith(count: number, backendPort: number, port: number, workers: number): Promise<Nginx> {
  const servers: string[] = [];
  for (let i = 0; i < count; i++) {
    servers.push(`  server {
    listen 127.0.0.1:${port}${i === 0 ? ' default_server' : ''};
    server_name ${siteName(i)};
${NGINX_PROXY_LOCATION}
  }`);
  }
  return Nginx.start(`vhosts-${count}`, `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 256; }
  server_names_hash_max_size ${Math.max(512, count * 4)};
  server_names_hash_bucket_size 128;
  keepalive_requests 10000000;
${servers.join('\n')}`, workers, port);
}

export default async function gatewayVhosts(opts: BenchOptions): Promise<BenchResult> {
  requireTools('nginx', 'wrk');
  const seconds = intOption(opts, 'seconds', 5);
  const rounds = intOption(opts, 'rounds', 3);
  const connections = intOption(opts, 'connections', 64);
  const threads = intOption(opts, 'threads', 2);
  const workers = intOption(opts, 'workers', availableParallelism());
  const many = intOption(opts, 'sites', 10_000);
  const few = intOption(opts, 'few', 10);
  const loadBefore = loadavg()[0]!;
  const dir = mkdtempSync(join(tmpdir(), 'strata-bench-vhosts-'));

  const [backendPort, nginxFewPort, nginxManyPort] = [await freePort(), await freePort(), await freePort()];
  const backend = await Nginx.start('backend', `  server { listen 127.0.0.1:${backendPort}; location / { return 200 "hello from backend\\n"; } }`, 1, backendPort);
  const started: Array<{ stop(): Promise<void> }> = [backend];
  const results = { gatewayFew: [] as number[], gatewayMany: [] as number[], nginxFew: [] as number[], nginxMany: [] as number[] };
  try {
    const nginxFew = await nginxWith(few, backendPort, nginxFewPort, workers);
    started.push(nginxFew);
    const nginxMany = await nginxWith(many, backendPort, nginxManyPort, workers);
    started.push(nginxMany);
    const gwFew = await gatewayWith(few, backendPort, workers);
    started.push({ stop: () => gwFew.close() });
    const gwMany = await gatewayWith(many, backendPort, workers);
    started.push({ stop: () => gwMany.close() });

    const setups: Array<{ key: keyof typeof results; url: string; script: string }> = [
      { key: 'nginxFew', url: `http://127.0.0.1:${nginxFewPort}/`, script: hostScript(dir, few) },
      { key: 'gatewayFew', url: `http://127.0.0.1:${gwFew.addresses()[0]!.port}/`, script: hostScript(dir, few) },
      { key: 'nginxMany', url: `http://127.0.0.1:${nginxManyPort}/`, script: hostScript(dir, many) },
      { key: 'gatewayMany', url: `http://127.0.0.1:${gwMany.addresses()[0]!.port}/`, script: hostScript(dir, many) },
    ];
    for (const s of setups) await wrk(s.url, { seconds: 2, connections, threads, script: s.script });
    for (let r = 0; r < rounds; r++) {
      for (const s of setups) results[s.key].push((await wrk(s.url, { seconds, connections, threads, script: s.script })).requestsPerSecond);
    }
  } finally {
    for (const s of started.reverse()) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  const m = { gatewayFew: median(results.gatewayFew), gatewayMany: median(results.gatewayMany), nginxFew: median(results.nginxFew), nginxMany: median(results.nginxMany) };
  const keepUp = m.gatewayMany / m.gatewayFew;
  const anchorKeepUp = m.nginxMany / m.nginxFew;
  const loadAfter = loadavg()[0]!;
  const list = (xs: number[]): string => xs.map(Math.round).join(', ');
  return {
    metric: `proxied HTTP/1.1 keep-alive requests per second with ${many} sites (requests spread over all names)`,
    unit: 'req/s',
    value: Math.round(m.gatewayMany),
    anchor: `nginx ${nginxVersion()} with ${many} server blocks (server_names hash), proxy_pass keepalive upstream, ${workers} workers, same backend and wrk`,
    anchor_value: Math.round(m.nginxMany),
    summary: [
      `wrk -t${threads} -c${connections} -d${seconds}s with a Host-walking Lua script, ${rounds} rounds alternating, medians; ${workers} workers each`,
      `gateway ${few} sites: ${list(results.gatewayFew)}; ${many} sites: ${list(results.gatewayMany)} req/s → ${keepUp.toFixed(3)}× kept`,
      `nginx   ${few} sites: ${list(results.nginxFew)}; ${many} sites: ${list(results.nginxMany)} req/s → ${anchorKeepUp.toFixed(3)}× kept`,
      `keep-up ratio vs nginx's: ${(keepUp / anchorKeepUp).toFixed(3)} (goal ≥ 0.95); gateway/nginx at ${many}: ${(m.gatewayMany / m.nginxMany).toFixed(2)}×`,
      `load average (1 min) before ${loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}`,
    ],
    extra: {
      workers, connections, threads, seconds, rounds, sites: many, few,
      gateway_few: Math.round(m.gatewayFew), nginx_few: Math.round(m.nginxFew),
      keep_up: round2(keepUp), anchor_keep_up: round2(anchorKeepUp), keep_up_vs_anchor: round2(keepUp / anchorKeepUp),
      loadavg_before: round2(loadBefore), loadavg_after: round2(loadAfter),
    },
  };
}
