import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { GatewayConfig, SiteRoute } from '../../src/gateway/index.js';
import { request, startBackend, upstream, withGateway, type Backend } from './helpers.js';
import { tempDir } from '../support/temp.js';

let alpha: Backend;
let beta: Backend;
before(async () => {
  [alpha, beta] = await Promise.all([startBackend('alpha'), startBackend('beta')]);
});
after(async () => {
  await Promise.all([alpha.close(), beta.close()]);
});

const listeners = [{ id: 'web', address: '127.0.0.1', port: 0, protocol: 'http' as const }];
const site = (hostname: string, b: Backend, tenantId = 't'): SiteRoute => ({ hostname, tenantId, target: upstream(b) });

/** Opens a WebSocket through the gateway (the handshake by hand) and returns a line-echo helper. */
async function openWebSocket(port: number, host: string): Promise<{ say(text: string): Promise<string>; socket: net.Socket }> {
  const socket = net.connect(port, '127.0.0.1');
  let buffered = '';
  let waiter: (() => void) | null = null;
  socket.on('error', () => {});
  socket.on('data', (d) => {
    buffered += d.toString('latin1');
    waiter?.();
  });
  const waitFor = async (pred: () => boolean): Promise<void> => {
    const deadline = Date.now() + 3000;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out; got ${JSON.stringify(buffered)}`);
      await new Promise<void>((r) => { waiter = r; setTimeout(r, 50); });
    }
  };
  socket.write(`GET /ws HTTP/1.1\r\nHost: ${host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n`);
  await waitFor(() => buffered.includes('\r\n\r\n'));
  assert.match(buffered, /^HTTP\/1\.1 101 /);
  assert.match(buffered, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);
  buffered = buffered.slice(buffered.indexOf('\r\n\r\n') + 4);
  return {
    socket,
    say: async (text) => {
      buffered = '';
      socket.write(text);
      await waitFor(() => buffered.endsWith(`:${text}`));
      return buffered;
    },
  };
}

test('a WebSocket keeps working while update swaps the route under it', async () => {
  await withGateway({ listeners, sites: [site('ws.test', alpha)] }, { workers: 2 }, async (gw, port) => {
    const ws = await openWebSocket(port(), 'ws.test');
    assert.equal(await ws.say('hello'), 'alpha:hello');
    await gw.update({ listeners, sites: [site('ws.test', beta)] });
    assert.equal(await ws.say('still'), 'alpha:still', 'the open tunnel stays on the backend it was opened to');
    const fresh = await openWebSocket(port(), 'ws.test');
    assert.equal(await fresh.say('new'), 'beta:new', 'new connections follow the new route');
    await gw.update({ listeners, sites: [] });
    assert.equal(await ws.say('after removal'), 'alpha:after removal');
    ws.socket.destroy();
    fresh.socket.destroy();
  });
});

/** Once `update()` resolved, every worker routes `host` to `expected` (fresh connections land on either worker). */
async function routedEverywhere(port: number, host: string, expected: string): Promise<void> {
  for (let i = 0; i < 6; i++) assert.equal((await request(port, { host })).json().backend, expected, `request ${i} for ${host}`);
}

// How fast an update reaches visitors is a benchmark (`npm run bench -- gateway-live`), not asserted here.
test('20 updates under load: no request fails, each update has applied on every worker when it resolves', async () => {
  const configs: GatewayConfig[] = [
    { listeners, sites: [site('load.test', alpha), site('other.test', beta)] },
    { listeners, sites: [site('load.test', beta), ...Array.from({ length: 500 }, (_, i) => site(`s${i}.test`, alpha))] },
  ];
  await withGateway(configs[0]!, { workers: 2 }, async (gw, port) => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });
    let ok = 0;
    const failures: string[] = [];
    let running = true;
    const client = async (): Promise<void> => {
      while (running) {
        await new Promise<void>((resolve) => {
          http.get({ host: '127.0.0.1', port: port(), path: '/', agent, headers: { host: 'load.test' } }, (res) => {
            res.resume();
            res.on('end', () => {
              if (res.statusCode === 200) ok++;
              else failures.push(`status ${res.statusCode}`);
              resolve();
            });
          }).on('error', (e) => {
            failures.push(e.message);
            resolve();
          });
        });
      }
    };
    const clients = Array.from({ length: 16 }, client);
    await sleep(100);
    for (let i = 1; i <= 20; i++) {
      await gw.update(configs[i % 2]!);
      await routedEverywhere(port(), 'load.test', i % 2 ? 'beta' : 'alpha');
      await sleep(20);
    }
    running = false;
    await Promise.all(clients);
    agent.destroy();
    assert.deepEqual(failures, []);
    assert.ok(ok > 100, `${ok} requests`);
  });
});

test('listeners are added and removed live', async () => {
  await withGateway({ listeners, sites: [site('a.test', alpha)] }, { workers: 2 }, async (gw, port) => {
    const withExtra: GatewayConfig = {
      listeners: [...listeners, { id: 'extra', address: '127.0.0.2', port: 0, protocol: 'http', defaultSite: 'b.test' }],
      sites: [site('a.test', alpha), { ...site('b.test', beta), listeners: ['extra'] }],
    };
    await gw.update(withExtra);
    const extra = port('extra');
    assert.equal((await request(extra, { address: '127.0.0.2', host: 'anything.test' })).json().backend, 'beta');
    assert.equal((await request(port('web'), { host: 'a.test' })).json().backend, 'alpha');
    await gw.update({ listeners, sites: [site('a.test', alpha)] });
    assert.deepEqual(gw.addresses().map((a) => a.id), ['web']);
    await assert.rejects(request(extra, { address: '127.0.0.2', host: 'b.test' }), /ECONNREFUSED/);
    // A bind failure refuses the whole update and leaves the running one alone.
    const blocker = net.createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const taken = (blocker.address() as net.AddressInfo).port;
    await assert.rejects(gw.update({ listeners: [...listeners, { id: 'x', address: '127.0.0.1', port: taken, protocol: 'http' }], sites: [] }), /EADDRINUSE/);
    blocker.close();
    assert.equal((await request(port('web'), { host: 'a.test' })).json().backend, 'alpha');
  });
});

test('a worker that dies is replaced and the listener never closes', async () => {
  const children = (): number[] => {
    try {
      return execFileSync('pgrep', ['-P', String(process.pid)]).toString().trim().split('\n').map(Number);
    } catch {
      return []; // pgrep exits 1 when there are none
    }
  };
  const others = new Set(children());
  await withGateway({ listeners, sites: [site('a.test', alpha)] }, { workers: 2, restarts: true }, async (_gw, port) => {
    const workers = children().filter((pid) => !others.has(pid));
    assert.equal(workers.length, 2);
    process.kill(workers[0]!, 'SIGKILL');
    for (let i = 0; i < 20; i++) assert.equal((await request(port(), { host: 'a.test' })).status, 200);
    await sleep(600);
    const now = children().filter((pid) => !others.has(pid));
    assert.equal(now.length, 2);
    assert.ok(!now.includes(workers[0]!));
  });
});

test('per-site metrics sum over workers; the access log has one JSON line per request', async () => {
  const dir = tempDir('gw-log');
  const logPath = join(dir, 'access.log');
  await withGateway({ listeners, sites: [site('m.test', alpha, 'tenant-m')] }, { workers: 2, accessLog: { path: logPath } }, async (gw, port) => {
    for (let i = 0; i < 10; i++) await request(port(), { host: 'm.test' });
    await request(port(), { host: 'nobody.test' });
    const text = await (await gw.metrics()).metrics();
    assert.match(text, /strata_gateway_requests_total\{site="m.test",tenant="tenant-m",class="2xx"\} 10/);
    assert.match(text, /strata_gateway_requests_total\{site="-",tenant="-",class="4xx"\} 1/);
    assert.match(text, /strata_gateway_request_duration_seconds_count\{site="m.test",tenant="tenant-m"\} 10/);
    assert.match(text, /strata_gateway_bytes_total\{site="m.test",tenant="tenant-m",direction="out"\} \d{4,}/);
  });
  const lines = readFileSync(logPath, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 11);
  const hit = lines.find((l) => l.site === 'm.test')!;
  assert.equal(hit.tenant, 'tenant-m');
  assert.equal(hit.status, 200);
  assert.equal(hit.method, 'GET');
  assert.equal(typeof hit.ms, 'number');
});

test('with 10,000 sites, a change to one has applied on every worker when the update resolves', async () => {
  const sites = Array.from({ length: 10_000 }, (_, i) => site(`s${i}.tenant${i % 100}.test`, i % 2 ? alpha : beta, `t${i % 100}`));
  await withGateway({ listeners, sites }, { workers: 2 }, async (gw, port) => {
    for (let k = 0; k < 5; k++) {
      const next = [...sites];
      next[k] = site(`s${k}.tenant${k}.test`, k % 2 ? beta : alpha, `t${k}`);
      await gw.update({ listeners, sites: next });
      await routedEverywhere(port(), `s${k}.tenant${k}.test`, k % 2 ? 'beta' : 'alpha');
      await routedEverywhere(port(), `s${k + 1}.tenant${(k + 1) % 100}.test`, (k + 1) % 2 ? 'alpha' : 'beta');
    }
  });
});
