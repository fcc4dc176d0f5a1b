/**
 * A `vm` guest tries to reach a service on the host's loopback through its
 * gateway address (as QEMU's user network would have let it) and must fail;
 * its QEMU runs unprivileged (the VM user, no capabilities) inside its own
 * cgroup. One boot; everything is removed at the end, also on failure. The
 * network attacks proper (other tenants, host services on every address) are in
 * `network.test.ts`.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { DEFINE_PROBE, ROUTE_VIA_GATEWAY, getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from '../../levels/vm/support.js';
import { tempDir } from '../../support/temp.js';

let root: string | null = null;
let driver: VmDriver | null = null;
let hostService: Server | null = null;
const id = 'attack-egress';

after(async () => {
  if (driver) {
    await driver.stop(id, { graceMs: 0 }).catch(() => undefined);
    await driver.delete(id).catch(() => undefined);
    await driver.cleanup();
  }
  hostService?.close();
});

test('a vm guest reaches no host service, and its QEMU is unprivileged and in its own cgroup', { timeout: 120_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  let hits = 0;
  hostService = createServer((_req, res) => { hits++; res.end('host secret'); });
  await new Promise<void>((resolve) => hostService!.listen(0, '127.0.0.1', resolve));
  const hostPort = (hostService.address() as { port: number }).port;

  root = tempDir('vm-attack', { mode: 0o711 });
  driver = new VmDriver({ stateDir: join(root, 'vm'), network: testNetwork(2) });
  assert.ok((await driver.provision()).available);
  // The guest is root in its VM: it adds a default route through its gateway (the host's bridge address) first.
  const probe = `(${ROUTE_VIA_GATEWAY}; ${DEFINE_PROBE}; if probe 127.0.0.1 ${hostPort} || probe $gw ${hostPort}; `
    + `then echo reached; else echo blocked; fi > /www/r.tmp; mv /www/r.tmp /www/result) & exec httpd -f -p 80 -h /www`;
  await driver.create(vmSpec(id, 'vm', { command: probe }));
  await driver.start(id);
  const seen = await driver.inspect(id);
  const result = await getWhen200(await guestUrl(driver, id, '/result'), 60_000, 100);
  assert.equal(result.trim(), 'blocked');
  assert.equal(hits, 0, 'the host service saw no request from the guest');

  const pid = Number(seen?.info?.pid);
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
  assert.notEqual(uid, 0, 'QEMU does not run as root');
  assert.match(status, /^CapEff:\s+0+$/m, 'QEMU has no effective capabilities');
  assert.match(status, /^NoNewPrivs:\s+1$/m);
  assert.match(status, /^Seccomp:\s+2$/m, 'QEMU runs under its seccomp sandbox');
  const cgroups = await readFile(`/proc/${pid}/cgroup`, 'utf8');
  assert.match(cgroups, new RegExp(`/strata-vm/vm-${id}$`, 'm'));
});
