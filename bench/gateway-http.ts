/**
 * Proxied HTTP/1.1 keep-alive requests per second and p99 latency through the
 * gateway, against nginx (Debian's) proxying to the same backend with the same
 * number of worker processes, both driven by the same `wrk` command.
 *
 * Setup, all on loopback: one backend (nginx, one worker, `return 200` with a
 * 20-byte body — the cheapest backend there is, so the proxies' own cost
 * dominates); the gateway with one site; nginx with an upstream keep-alive
 * pool and the same forwarding headers (Host, X-Forwarded-For/-Proto/-Host),
 * access logs off on both. Rounds alternate nginx and gateway (after a warm-up
 * each) and the medians are reported, so load from other processes hits both
 * alike; the load average is reported too.
 *
 * CPU per request: each round also runs both proxies at a moderate load (wrk
 * -t1 with --cpu-connections, default 8, for --cpu-seconds, default 5) and
 * charges the CPU time their processes used (/proc/PID/stat: the gateway's
 * workers; nginx's master and workers) to the requests done. Unlike req/s,
 * that figure hardly moves when other work shares the machine. It is taken
 * in the saturating rounds too (`cpu_us_per_request_saturated`).
 *
 * Options: --seconds=N per round (default 10), --rounds=N (default 3),
 * --connections=N (default 64), --threads=N wrk threads (default 2),
 * --workers=N for both proxies (default: the number of cores).
 *
 * Needs the Debian packages nginx (nginx-light is enough) and wrk.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startGateway } from '../src/gateway/index.js';
import { intOption, type BenchOptions, type BenchResult } from './harness.js';
import { childPids, gatewayWorkerPids, median, requireTools, round2, withCpu, wrk, type WrkResult } from './load.js';
import { freePort } from '../test/support/net.js';

/** The nginx anchor's proxy location: keep-alive upstream and the forwarding headers the gateway sets, so both do the same work. */
export const NGINX_PROXY_LOCATION = `    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Forwarded-Host \$host;
    }`;

/** nginx in the foreground with its own prefix and config; stopped by its pid. */
export class Nginx {
  private constructor(private readonly child: ChildProcess, private readonly prefix: string) {}

  /** `mainBlock`: top-level directives before `http` (load_module, a `stream` block). */
  static async start(name: string, httpBlock: string, workers: number, port: number, mainBlock = ''): Promise<Nginx> {
    const prefix = mkdtempSync(join(tmpdir(), `strata-bench-nginx-${name}-`));
    mkdirSync(join(prefix, 'logs'));
    const conf = writeNginxConf(prefix, httpBlock, workers, mainBlock);
    const child = spawn('nginx', ['-p', prefix, '-c', conf, '-g', 'daemon off;'], { stdio: ['ignore', 'ignore', 'inherit'] });
    const nginx = new Nginx(child, prefix);
    await waitForPort(port, () => child.exitCode !== null);
    return nginx;
  }

  /** Rewrites the config and asks the master to reload it (SIGHUP): new workers take new connections, old ones finish theirs. */
  reload(httpBlock: string, workers: number, mainBlock = ''): void {
    writeNginxConf(this.prefix, httpBlock, workers, mainBlock);
    this.child.kill('SIGHUP');
  }

  /** The master and its workers (for CPU accounting). */
  pids(): number[] {
    const master = this.child.pid;
    return master === undefined ? [] : [master, ...childPids(master)];
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((resolve) => this.child.once('exit', resolve));
      this.child.kill('SIGTERM');
      await exited;
    }
    rmSync(this.prefix, { recursive: true, force: true });
  }
}

function writeNginxConf(prefix: string, httpBlock: string, workers: number, mainBlock: string): string {
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, `worker_processes ${workers};
pid ${prefix}/nginx.pid;
error_log ${prefix}/logs/error.log warn;
${mainBlock}
events { worker_connections 8192; }
http {
  access_log off;
  client_body_temp_path ${prefix}/body;
  proxy_temp_path ${prefix}/proxy;
  fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi;
  scgi_temp_path ${prefix}/scgi;
${httpBlock}
}
`);
  return conf;
}

async function waitForPort(port: number, failed: () => boolean): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (failed()) throw new Error(`server for port ${port} exited`);
    const up = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(true));
      s.listen(port, '127.0.0.1', () => s.close(() => resolve(false)));
    });
    if (up) return;
    await sleep(50);
  }
  throw new Error(`nothing listens on ${port}`);
}


export default async function gatewayHttp(opts: BenchOptions): Promise<BenchResult> {
  requireTools('nginx', 'wrk');
  const seconds = intOption(opts, 'seconds', 10);
  const rounds = intOption(opts, 'rounds', 3);
  const connections = intOption(opts, 'connections', 64);
  const threads = intOption(opts, 'threads', 2);
  const workers = intOption(opts, 'workers', availableParallelism());
  const cpuConnections = intOption(opts, 'cpu-connections', 8);
  const cpuSeconds = intOption(opts, 'cpu-seconds', 5);
  const load = { seconds, connections, threads, host: 'bench.test' };
  const moderate = { seconds: cpuSeconds, connections: cpuConnections, threads: 1, host: 'bench.test' };
  const loadBefore = loadavg()[0]!;

  const [backendPort, nginxPort] = [await freePort(), await freePort()];
  const backend = await Nginx.start('backend', `  server { listen 127.0.0.1:${backendPort}; location / { return 200 "hello from backend\\n"; } }`, 1, backendPort);
  const nginx = await Nginx.start('proxy', `  upstream backend { server 127.0.0.1:${backendPort}; keepalive 256; }
  server {
    listen 127.0.0.1:${nginxPort} default_server;
${NGINX_PROXY_LOCATION}
  }`, workers, nginxPort);
  const gateway = await startGateway({
    listeners: [{ id: 'bench', address: '127.0.0.1', port: 0, protocol: 'http' }],
    sites: [{ hostname: 'bench.test', tenantId: 'bench', target: { kind: 'upstream', host: '127.0.0.1', port: backendPort } }],
  }, { workers });
  const gatewayUrl = `http://127.0.0.1:${gateway.addresses()[0]!.port}/`;
  const nginxUrl = `http://127.0.0.1:${nginxPort}/`;

  const ours: WrkResult[] = [];
  const theirs: WrkResult[] = [];
  const cpu = { ours: [] as number[], theirs: [] as number[], oursSaturated: [] as number[], theirsSaturated: [] as number[] };
  const gatewayPids = gatewayWorkerPids();
  try {
    await wrk(nginxUrl, { ...load, seconds: 2 });
    await wrk(gatewayUrl, { ...load, seconds: 2 });
    for (let r = 0; r < rounds; r++) {
      const n = await withCpu(nginx.pids(), () => wrk(nginxUrl, load));
      const g = await withCpu(gatewayPids, () => wrk(gatewayUrl, load));
      theirs.push(n.wrk);
      ours.push(g.wrk);
      cpu.theirsSaturated.push(n.cpuMicrosPerRequest);
      cpu.oursSaturated.push(g.cpuMicrosPerRequest);
      cpu.theirs.push((await withCpu(nginx.pids(), () => wrk(nginxUrl, moderate))).cpuMicrosPerRequest);
      cpu.ours.push((await withCpu(gatewayPids, () => wrk(gatewayUrl, moderate))).cpuMicrosPerRequest);
    }
  } finally {
    await gateway.close();
    await nginx.stop();
    await backend.stop();
  }

  const value = median(ours.map((x) => x.requestsPerSecond));
  const anchor = median(theirs.map((x) => x.requestsPerSecond));
  const p99 = median(ours.map((x) => x.p99Ms));
  const anchorP99 = median(theirs.map((x) => x.p99Ms));
  const cpuOurs = median(cpu.ours);
  const cpuTheirs = median(cpu.theirs);
  const loadAfter = loadavg()[0]!;
  return {
    metric: 'proxied HTTP/1.1 keep-alive requests per second',
    unit: 'req/s',
    value,
    anchor: `nginx ${nginxVersion()} proxy_pass, keepalive upstream, ${workers} workers, same backend and wrk`,
    anchor_value: anchor,
    summary: [
      `wrk -t${threads} -c${connections} -d${seconds}s, ${rounds} rounds alternating, medians; ${workers} workers each; backend nginx (1 worker)`,
      `gateway: ${ours.map((x) => Math.round(x.requestsPerSecond)).join(', ')} req/s; p99 ${p99.toFixed(2)} ms`,
      `nginx:   ${theirs.map((x) => Math.round(x.requestsPerSecond)).join(', ')} req/s; p99 ${anchorP99.toFixed(2)} ms`,
      cpuLine(cpuConnections, cpu),
      `load average (1 min) before ${loadBefore.toFixed(2)}, after ${loadAfter.toFixed(2)}`,
    ],
    extra: {
      p99_ms: round2(p99), anchor_p99_ms: round2(anchorP99), workers, connections, threads, seconds, rounds,
      rounds_value: ours.map((x) => Math.round(x.requestsPerSecond)), rounds_anchor: theirs.map((x) => Math.round(x.requestsPerSecond)),
      loadavg_before: round2(loadBefore), loadavg_after: round2(loadAfter),
      ...cpuFields(cpu),
    },
  };
}

/** CPU-µs per request of both proxies, per round (moderate load, then saturating). */
export interface CpuRounds {
  ours: number[];
  theirs: number[];
  oursSaturated: number[];
  theirsSaturated: number[];
}

/** The summary line for CPU per request. */
export function cpuLine(cpuConnections: number, cpu: CpuRounds): string {
  const fmt = (xs: number[]): string => xs.map((x) => x.toFixed(1)).join(', ');
  return `CPU-µs per request (wrk -t1 -c${cpuConnections}): gateway ${fmt(cpu.ours)}; nginx ${fmt(cpu.theirs)} ` +
    `(ratio ${(median(cpu.ours) / median(cpu.theirs)).toFixed(2)}, lower is better); saturated: gateway ${fmt(cpu.oursSaturated)}; nginx ${fmt(cpu.theirsSaturated)}`;
}

/** The JSON fields for CPU per request (medians; `cpu_ratio` = ours / nginx's, lower is better). */
export function cpuFields(cpu: CpuRounds): Record<string, number> {
  return {
    cpu_us_per_request: round2(median(cpu.ours)), anchor_cpu_us_per_request: round2(median(cpu.theirs)),
    cpu_ratio: round2(median(cpu.ours) / median(cpu.theirs)),
    cpu_us_per_request_saturated: round2(median(cpu.oursSaturated)), anchor_cpu_us_per_request_saturated: round2(median(cpu.theirsSaturated)),
  };
}


export function nginxVersion(): string {
  const out = spawnSync('nginx', ['-v'], { encoding: 'utf8' });
  return /nginx\/([\d.]+)/.exec(out.stderr)?.[1] ?? '?';
}
