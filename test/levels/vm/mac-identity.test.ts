/**
 * The vm level's network names a sender by its MAC, and the MAC cannot be
 * borrowed: on a real bridge (a veth into a network namespace stands in for a
 * VM's tap), refused flows are counted under the sender's MAC, and frames
 * with a MAC other than the one listed for their port are dropped before any
 * counter or the host sees them. Root only.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { run, runQuietly } from '../../../src/levels/os/exec.js';
import { macFilterRules, probeCounterRules, readProbeCounts } from '../../../src/levels/vm/network.js';

const root = process.getuid?.() === 0;
const tag = `x${randomBytes(2).toString('hex')}`;
const table = `${tag}_vm`;
const bridge = `${tag}b0`;
const port = `${tag}t0`;
const ns = `${tag}-ns`;
const MAC = '52:54:00:12:34:56';
const OTHER = '52:54:00:65:43:21';

/** One TCP connection attempt from inside the namespace (to an address nobody routes: the counters' "routed" case). */
const probe = (dport: number): Promise<boolean> =>
  runQuietly('ip', ['netns', 'exec', ns, 'timeout', '1', 'bash', '-c', `echo > /dev/tcp/10.251.9.9/${dport}`]);
const ours = async () => (await readProbeCounts()).filter((c) => c.table === table);

before(async () => {
  if (!root) return;
  await run('nft', ['-f', '-'], { input: probeCounterRules(table, `${tag}b*`, []) + macFilterRules(`${table}_l2`, `${tag}t*`) });
  await run('ip', ['-batch', '-'], {
    input: [`netns add ${ns}`, `link add ${bridge} type bridge`, `link set ${bridge} up`, `addr add 10.251.7.1/24 dev ${bridge}`,
      `link add ${port} type veth peer name ${tag}p0`, `link set ${tag}p0 netns ${ns}`, `link set ${port} master ${bridge} up`, ''].join('\n'),
  });
  await run('ip', ['-n', ns, '-batch', '-'], {
    input: [`link set ${tag}p0 address ${MAC} up`, `addr add 10.251.7.5/24 dev ${tag}p0`, 'route add default via 10.251.7.1', ''].join('\n'),
  });
  await run('nft', ['add', 'element', 'bridge', `${table}_l2`, 'macs', `{ "${port}" . ${MAC} }`]);
});

after(async () => {
  if (!root) return;
  await runQuietly('ip', ['netns', 'del', ns]);
  await runQuietly('ip', ['link', 'del', port]);
  await runQuietly('ip', ['link', 'del', bridge]);
  await runQuietly('nft', ['delete', 'table', 'inet', table]);
  await runQuietly('nft', ['delete', 'table', 'bridge', `${table}_l2`]);
});

test('a refused flow is counted under the MAC of the port it came from; another MAC on that port gets nowhere', { skip: !root && 'needs root' }, async () => {
  await probe(80);
  const counted = await ours();
  assert.equal(counted.length, 1, JSON.stringify(counted));
  assert.deepEqual({ ...counted[0], packets: 0 }, {
    table, kind: 'routed', mac: MAC, source: '10.251.7.5', destination: '10.251.9.9', protocol: 'tcp', port: 80, packets: 0,
  });

  // The "VM" takes another VM's MAC: its frames are dropped at the bridge port, so nothing is counted for anyone.
  await run('ip', ['-n', ns, 'link', 'set', `${tag}p0`, 'address', OTHER]);
  await run('ip', ['-n', ns, 'neigh', 'flush', 'all']);
  await probe(81);
  assert.deepEqual((await ours()).map((c) => c.port), [80], 'no flow from a borrowed MAC');
});
