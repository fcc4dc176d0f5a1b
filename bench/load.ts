/**
 * Load tools the benchmarks share: wrk (Debian), a free loopback port, a
 * check that the tools a bench needs are installed, self-signed ECDSA
 * certificates, and the statistics every round-based bench reports.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface WrkResult {
  requestsPerSecond: number;
  p99Ms: number;
  /** wrk's Transfer/sec, in MiB/s. */
  megabytesPerSecond: number;
  /** Requests completed in the run ("N requests in …"). */
  requests: number;
}

/**
 * Runs wrk against `url` and reads req/s and the p99 latency from its report.
 * `script`: a wrk Lua script (e.g. one that picks each request's Host).
 */
export async function wrk(url: string, o: { seconds: number; connections: number; threads: number; host?: string; script?: string; close?: boolean }): Promise<WrkResult> {
  const args = [`-t${o.threads}`, `-c${o.connections}`, `-d${o.seconds}s`, '--latency',
    ...(o.host ? ['-H', `Host: ${o.host}`] : []), ...(o.close ? ['-H', 'Connection: close'] : []), ...(o.script ? ['-s', o.script] : []), url];
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn('wrk', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => { text += d.toString(); });
    child.on('error', reject);
    child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}`))));
  });
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const p99 = /99%\s+([\d.]+)(us|ms|s)/.exec(out);
  const transfer = /Transfer\/sec:\s+([\d.]+)(B|KB|MB|GB)/.exec(out);
  const requests = /(\d+) requests in/.exec(out);
  if (rps === null || p99 === null || transfer === null || requests === null) throw new Error(`unexpected wrk output:\n${out}`);
  if (/Non-2xx or 3xx responses|Socket errors/.test(out)) throw new Error(`errors under load:\n${out}`);
  const scale = p99[2] === 'us' ? 1 / 1000 : p99[2] === 's' ? 1000 : 1;
  const mib = { B: 1 / 2 ** 20, KB: 1 / 1024, MB: 1, GB: 1024 }[transfer[2] as 'B' | 'KB' | 'MB' | 'GB'];
  return { requestsPerSecond: Number(rps[1]), p99Ms: Number(p99[1]) * scale, megabytesPerSecond: Number(transfer[1]) * mib, requests: Number(requests[1]) };
}

/** Clock ticks per second of /proc's utime and stime (USER_HZ: 100 on Linux). */
const TICKS_PER_SECOND = 100;

/** CPU time (user + system) a process has used so far, in microseconds; 0 when it is gone. */
export function cpuMicros(pid: number): number {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return 0;
  }
  // Fields after the command name (which may contain spaces) start at its closing parenthesis: utime is 14th, stime 15th.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / TICKS_PER_SECOND;
}

/** The direct children of `pid` (/proc/PID/task/*\/children). */
export function childPids(pid: number): number[] {
  const path = `/proc/${pid}/task/${pid}/children`;
  if (!existsSync(path)) return [];
  return readFileSync(path, 'latin1').split(' ').filter((x) => x !== '').map(Number);
}

/** `pid`'s children whose command line contains `needle` (e.g. the gateway's forked workers). */
export function childPidsRunning(pid: number, needle: string): number[] {
  return childPids(pid).filter((c) => {
    try {
      return readFileSync(`/proc/${c}/cmdline`, 'latin1').includes(needle);
    } catch {
      return false;
    }
  });
}

/** The gateway's worker processes (forked by startGateway in this process). */
export function gatewayWorkerPids(): number[] {
  return childPidsRunning(process.pid, 'gateway/worker.js');
}

export interface CpuPerRequest {
  wrk: WrkResult;
  /** CPU microseconds the processes used per completed request (user + system, all of them summed). */
  cpuMicrosPerRequest: number;
}

/**
 * Runs `load` and charges the CPU time `pids` used meanwhile to its requests.
 * CPU per request hardly moves with other load on the machine, unlike
 * requests per second, so two proxies measured this way in one run compare
 * fairly on a shared machine. (/proc counts in 10 ms ticks: runs of a few
 * seconds keep that error under 1 %.)
 */
export async function withCpu(pids: number[], load: () => Promise<WrkResult>): Promise<CpuPerRequest> {
  const sum = (): number => pids.reduce((acc, p) => acc + cpuMicros(p), 0);
  const before = sum();
  const result = await load();
  const used = sum() - before;
  return { wrk: result, cpuMicrosPerRequest: result.requests > 0 ? used / result.requests : Number.NaN };
}

export function requireTools(...tools: string[]): void {
  for (const tool of tools) {
    if (spawnSync(tool, ['-v']).error !== undefined) throw new Error(`${tool} is not installed (Debian package: ${tool === 'nginx' ? 'nginx-light or nginx' : tool})`);
  }
}

export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
export const round2 = (x: number): number => Math.round(x * 100) / 100;

/** A self-signed ECDSA P-256 certificate for `names` (the first is the CN), written to DIR/LABEL.{crt,key} by the openssl CLI. */
export function selfSignedEcCert(dir: string, label: string, names: string[]): { certPath: string; keyPath: string; certPem: string; keyPem: string } {
  const keyPath = join(dir, `${label}.key`);
  const certPath = join(dir, `${label}.crt`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', `/CN=${names[0]}`,
    '-addext', `subjectAltName=${names.map((n) => `DNS:${n}`).join(',')}`], { stdio: 'ignore' });
  return { certPath, keyPath, certPem: readFileSync(certPath, 'utf8'), keyPem: readFileSync(keyPath, 'utf8') };
}
