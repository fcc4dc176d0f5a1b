/**
 * Network segregation of VMs, as for containers: an attacker guest of tenant A,
 * root in its VM, routes everything through its gateway and tries to reach
 * tenant B's VM, a host service listening on every address (through its own
 * gateway address and through B's), and the host's other addresses. All must
 * fail. Positive controls prove the probe can succeed: A's second VM and the
 * gateway's port (the one host port allowed) answer the same probe.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { DEFINE_PROBE, ROUTE_VIA_GATEWAY, getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from '../../levels/vm/support.js';
import { tempDir } from '../../support/temp.js';

let root: string | null = null;
let driver: VmDriver | null = null;
const servers: Server[] = [];
const ids = ['net-b1', 'net-a2', 'net-a1'];

after(async () => {
  if (driver) {
    for (const id of ids) {
      await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
      await driver.delete(id).catch(() => undefined);
    }
    await driver.cleanup();
  }
  for (const s of servers) s.close();
});

async function listenEverywhere(body: string): Promise<{ port: number; hits: () => number }> {
  let hits = 0;
  const server = createServer((_req, res) => { hits++; res.end(body); });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '0.0.0.0', resolve));
  return { port: (server.address() as AddressInfo).port, hits: () => hits };
}

test('a vm guest reaches neither another tenant nor host services; its own tenant and the gateway port it does', { timeout: 240_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  const secret = await listenEverywhere('host secret');
  const gateway = await listenEverywhere('gateway');

  root = tempDir('vm-net', { mode: 0o711 });
  driver = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(2, [gateway.port]) });
  assert.ok((await driver.provision()).available);

  const victimPage = 'echo victim > /www/index.html; exec httpd -f -p 80 -h /www';
  await driver.create(vmSpec('net-b1', 'vm', { command: victimPage }, 128, { tenantId: 'tenant-b' }));
  await driver.create(vmSpec('net-a2', 'vm', { command: victimPage }, 128, { tenantId: 'tenant-a' }));
  await driver.start('net-b1');
  await driver.start('net-a2');
  const addressOf = async (id: string): Promise<string> => String((await driver!.inspect(id))?.info?.address);
  const b1 = await addressOf('net-b1');
  const a2 = await addressOf('net-a2');
  assert.notEqual(b1.split('.').slice(0, 3).join('.'), a2.split('.').slice(0, 3).join('.'), 'tenants live on different /24s');
  const bGateway = `${b1.split('.').slice(0, 3).join('.')}.1`;
  // Both victims answer before the attacker probes (so "blocked" means blocked, not "not up yet").
  assert.equal((await getWhen200(await guestUrl(driver, 'net-b1'), 60_000, 100)).trim(), 'victim');
  assert.equal((await getWhen200(await guestUrl(driver, 'net-a2'), 60_000, 100)).trim(), 'victim');

  const targets: Record<string, string> = {
    'other-tenant-vm': `${b1} 80`,
    'host-service-via-own-gateway': `$gw ${secret.port}`,
    'host-service-via-other-bridge': `${bGateway} ${secret.port}`,
    'host-loopback-service': `127.0.0.1 ${secret.port}`,
    'same-tenant-vm': `${a2} 80`,
    'gateway-port': `$gw ${gateway.port}`,
  };
  const probes = Object.entries(targets)
    .map(([name, target]) => `if probe ${target}; then echo ${name}=reached; else echo ${name}=blocked; fi`)
    .join('; ');
  await driver.create(vmSpec('net-a1', 'vm', { command: `(${ROUTE_VIA_GATEWAY}; ${DEFINE_PROBE}; ${probes}) > /www/r.tmp 2>&1; mv /www/r.tmp /www/result & exec httpd -f -p 80 -h /www` }, 128, { tenantId: 'tenant-a' }));
  await driver.start('net-a1');
  const result = await getWhen200(await guestUrl(driver, 'net-a1', '/result'), 90_000, 200);
  const seen = Object.fromEntries(result.trim().split('\n').filter((l) => l.includes('=')).map((l) => l.split('=') as [string, string]));
  assert.deepEqual(seen, {
    'other-tenant-vm': 'blocked',
    'host-service-via-own-gateway': 'blocked',
    'host-service-via-other-bridge': 'blocked',
    'host-loopback-service': 'blocked',
    'same-tenant-vm': 'reached',
    'gateway-port': 'reached',
  }, result);
  assert.equal(secret.hits(), 0, 'the host service saw no request from a guest');
  assert.ok(gateway.hits() >= 1, 'the gateway port did answer the guest');
});
