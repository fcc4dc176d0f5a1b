/**
 * Move: live migration of a running VM (memory, devices and disk) from one driver to
 * another with its own state dir and network, as between two Strata daemons on
 * this machine, while a client keeps asking the site (through a small proxy
 * that, like the gateway, follows the address the owning driver reports). The
 * guest's in-memory counter goes on (memory moved, not rebooted), its disk came
 * along, it answers at the receiver's address, and the sender holds nothing.
 * Failed requests during the move are counted and reported.
 */
import assert from 'node:assert/strict';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { VmDriver } from '../../../src/levels/vm/index.js';
import { getWhen200, guestUrl, imageMissing, testNetwork, vmSpec } from './support.js';
import { tempDir } from '../../support/temp.js';

const SERVICE = 'echo boot >> /data/boots; sync; cp /data/boots /www/boots; '
  + '(i=0; while true; do i=$((i+1)); echo $i > /www/c.tmp; mv /www/c.tmp /www/counter; sleep 0.2; done) & exec httpd -f -p 80 -h /www';
const id = 'mover';
let root: string | null = null;
const drivers: VmDriver[] = [];
let proxy: Server | null = null;

after(async () => {
  proxy?.close();
  for (const d of drivers) {
    for (const i of [id, 'moved', 'mover-disk']) {
      await d.stop(i, { graceMs: 0 }).catch(() => undefined);
      await d.delete(i).catch(() => undefined);
    }
    await d.cleanup();
  }
});

test('a running vm moves to another driver live, with its disk, while its site is asked', { timeout: 300_000 }, async (t) => {
  const missing = imageMissing('x86_64');
  if (missing) return t.skip(missing);
  root = tempDir('vm-move', { mode: 0o711 });
  const from = new VmDriver({ stateDir: join(root, 'a'), network: testNetwork(8) });
  const to = new VmDriver({ stateDir: join(root, 'b'), network: testNetwork(9) });
  drivers.push(from, to);
  assert.ok((await from.provision()).available);
  assert.ok((await to.provision()).available);

  const spec = vmSpec(id, 'vm', { command: SERVICE }, 128, { diskMiB: 64 });
  await from.create(spec);
  await from.start(id);
  const before = Number((await getWhen200(await guestUrl(from, id, '/counter'), 90_000, 100)).trim());

  // The site: a proxy to whatever address the driver that owns the VM reports.
  let upstream = new URL(await guestUrl(from, id));
  proxy = createServer((req, res) => {
    const out = request({ host: upstream.hostname, port: upstream.port, path: req.url, timeout: 2_000 }, (r) => {
      res.writeHead(r.statusCode ?? 502);
      r.pipe(res);
    });
    out.on('timeout', () => out.destroy(new Error('timeout')));
    // A backend that breaks mid-answer (the VM paused for the switch-over) cuts the client off, as a gateway does.
    out.on('error', () => { if (res.headersSent) res.destroy(); else res.writeHead(502).end(); });
    out.end();
  });
  await new Promise<void>((r) => proxy!.listen(0, '127.0.0.1', r));
  const site = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`;

  let ok = 0;
  let failed = 0;
  let okDuringMove = 0;
  let moving = true;
  const asking = (async () => {
    while (moving) {
      const good = await fetch(`${site}/counter`, { signal: AbortSignal.timeout(3_000) }).then((r) => r.status === 200, () => false);
      if (good) ok++;
      else failed++;
      await new Promise((r) => setTimeout(r, 50));
    }
  })();

  let after: number;
  try {
    // The receiving daemon names the instance by its own id (the cgroup, MAC and state dir follow it).
    await to.moveIn({ ...spec, id: 'moved' }, async (socket) => {
      const okBefore = ok;
      await from.moveOut(id, socket);
      okDuringMove = ok - okBefore;
    });
    upstream = new URL(await guestUrl(to, 'moved'));
    after = Number((await getWhen200(`${site}/counter`, 60_000, 50)).trim());
    await new Promise((r) => setTimeout(r, 1_000));
  } finally {
    moving = false;
    await asking;
  }
  t.diagnostic(`move: ${ok} requests answered, ${failed} failed (${okDuringMove} answered while memory was copied)`);

  assert.ok(after >= before, `the counter went on from ${before} (memory moved, not rebooted): ${after}`);
  assert.match(String((await to.inspect('moved'))?.info?.address), /^10\.189\.0\.\d+$/, 'it answers at the receiver\'s address');
  assert.equal(await from.inspect(id), null, 'the sender holds nothing any more');
  assert.ok(okDuringMove >= 1, 'the site answered while the memory was being copied');
  // The disk came along: a fresh boot on the receiver reads it (not the page cache that moved with the memory).
  await to.stop('moved', { graceMs: 60_000 });
  await to.start('moved');
  assert.equal((await getWhen200(await guestUrl(to, 'moved', '/boots'), 90_000, 100)).trim(), 'boot\nboot', 'the sender\'s boot is on the receiver\'s disk');
});
