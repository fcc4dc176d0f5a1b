/**
 * The host-side VM interceptors without a guest: the network one over
 * counters handed to it (attribution by the sender's MAC, never its address;
 * one event per flow, repeats, spoofed sources, other tenants vs the outside), and the
 * resource one over a real memory cgroup whose process the OOM killer ends
 * (root only), raising the default rule.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import type { GuardEvent } from '../../src/core/guard-event.js';
import { Guard } from '../../src/guard/guard.js';
import { VmNetworkInterceptor } from '../../src/levels/vm/guard/network.js';
import { VmResourceInterceptor } from '../../src/levels/vm/guard/resources.js';
import type { VmTarget } from '../../src/levels/vm/guard/targets.js';
import { loadDefaultRuleset } from '../../src/guard/rules.js';
import { cgroupMode } from '../../src/core/cgroups.js';
import { createVmCgroup, removeVmCgroup } from '../../src/levels/vm/cgroup.js';
import type { ProbeCount } from '../../src/levels/vm/network.js';
import { FakeTarget, MemoryAudit, recordingBus } from './fakes.js';
import { until } from '../support/until.js';

/** How long this file's checks wait, and how often they look. */
const WAIT = { ms: 5_000, every: 10 };

/** Two-character VM ids give distinct MACs. */
const macOf = (id: string): string => `52:54:00:00:${Buffer.from(id).toString('hex').match(/../g)!.join(':')}`;
const vm = (id: string, tenantId: string, address: string, bridge: string): VmTarget => ({
  tenantId, instanceId: id, level: 'vm', pid: process.pid, address, bridge, mac: macOf(id), cgroup: `vm-${id}`, vcpus: 1,
});
const TARGETS = [vm('a1', 'ta', '10.9.0.2', 'xxb0'), vm('a2', 'ta', '10.9.0.3', 'xxb0'), vm('b1', 'tb', '10.9.1.2', 'xxb1'), vm('c1', 'tc', '10.9.2.2', 'xxb2')];
/** A flow counted under the MAC of VM `from`. */
const flow = (kind: ProbeCount['kind'], from: string, source: string, destination: string, port: number, packets: number): ProbeCount => ({
  table: 'xx_vm', kind, mac: macOf(from), source, destination, protocol: 'tcp', port, packets,
});

test('the vm network interceptor reports each refused flow once, on the VM that sent it', async () => {
  let counts: ProbeCount[] = [flow('host', 'a1', '10.9.0.2', '10.9.0.1', 22, 5)]; // before the start: history, not news
  let reads = 0;
  const events: GuardEvent[] = [];
  const targets = [...TARGETS];
  const net = new VmNetworkInterceptor({ targets: async () => targets, read: async () => { reads++; return counts; }, intervalMs: 10, repeatMs: 60_000 });
  await net.start((e) => events.push(e));
  try {
    const after = async (next: ProbeCount[]): Promise<void> => {
      counts = next;
      const r = reads;
      await until(() => reads >= r + 2, { ...WAIT, what: 'two polls' });
    };
    await after([...counts, flow('host', 'a1', '10.9.0.2', '10.9.0.1', 22, 9)].slice(1));
    assert.equal(events.length, 0, 'a flow counted before the start is not reported, nor its growth within repeatMs');

    await after([flow('host', 'a1', '10.9.0.2', '10.9.0.1', 22, 9), flow('host', 'a2', '10.9.0.3', '10.9.0.1', 5432, 1),
      flow('routed', 'a2', '10.9.0.3', '10.9.1.2', 80, 2), flow('routed', 'a2', '10.9.0.3', '192.0.2.1', 443, 1),
      flow('host', 'c1', '10.9.2.77', '10.9.2.1', 25, 1)]);
    const by = (dport: number) => events.find((e) => e.fields['net.dport'] === dport);
    assert.equal(events.length, 4);
    assert.equal(by(5432)?.instanceId, 'a2');
    assert.equal(by(5432)?.fields['net.target'], 'host');
    assert.equal(by(80)?.fields['net.target'], 'tenant');
    assert.equal(by(80)?.fields['net.dtenant'], 'tb');
    assert.equal(by(80)?.fields['net.packets'], 2);
    assert.equal(by(443)?.fields['net.target'], 'outside');
    assert.equal(by(25)?.instanceId, 'c1', 'a spoofed source address is put on the VM whose MAC sent it');
    assert.equal(by(25)?.fields['net.spoofed'], true);

    events.length = 0;
    await after([flow('host', 'a2', '10.9.0.3', '10.9.0.1', 5432, 1)]);
    assert.equal(events.length, 0, 'nothing new');
    await after([flow('host', 'a2', '10.9.0.3', '10.9.0.1', 5432, 1), flow('host', 'a1', '10.9.0.2', '10.9.0.1', 22, 3)]);
    assert.equal(events.length, 1, 'an expired flow counted again is news again');
    assert.equal(events[0]!.fields['net.packets'], 3);

    events.length = 0;
    const early = flow('host', 'd1', '10.9.9.2', '10.9.9.1', 22, 1);
    await after([early]);
    assert.equal(events.length, 0, 'a flow from a MAC no known VM has is put on nobody');
    targets.push(vm('d1', 'td', '10.9.9.2', 'xxb9'));
    await after([{ ...early, packets: 2 }]);
    assert.equal(events.length, 1, 'once the VM is known (the targets lag a start), the flow is reported');
    assert.equal(events[0]!.instanceId, 'd1');
    assert.equal(events[0]!.fields['net.packets'], 2);
  } finally {
    await net.stop();
  }
});

test("an address handed to the next VM: the deleted VM's refused flows are never put on it", async () => {
  // a1 (tenant ta) probes, then is deleted; a3 gets its address at once. The daemon's targets already list a3.
  const events: GuardEvent[] = [];
  const log: string[] = [];
  let counts: ProbeCount[] = [];
  let reads = 0;
  const targets = [vm('a3', 'ta', '10.9.0.2', 'xxb0'), vm('b1', 'tb', '10.9.1.2', 'xxb1')];
  const net = new VmNetworkInterceptor({
    targets: async () => targets, read: async () => { reads++; return counts; }, intervalMs: 10, unknownAfterMs: 100, log: (m) => log.push(m),
  });
  await net.start((e) => events.push(e));
  try {
    counts = [flow('routed', 'a1', '10.9.0.2', '10.9.1.2', 5432, 3), flow('host', 'a1', '10.9.0.2', '10.9.0.1', 22, 1)];
    await until(() => net.unattributed === 2, { ...WAIT, what: 'both flows counted as unattributed' });
    assert.equal(events.length, 0, 'nothing is put on a3 (which holds the address now) or anyone else');
    assert.equal(log.length, 2);
    const r = reads;
    await until(() => reads >= r + 2, { ...WAIT, what: 'two more polls' });
    assert.equal(net.unattributed, 2, 'counted once per flow');
    // a3's own probe, from the same address, is a3's.
    counts = [...counts, flow('host', 'a3', '10.9.0.2', '10.9.0.1', 23, 1)];
    await until(() => events.length === 1, { ...WAIT, what: "a3's own flow" });
    assert.equal(events[0]!.instanceId, 'a3');
    assert.equal(events[0]!.fields['net.spoofed'], undefined);
  } finally {
    await net.stop();
  }
});

test('a VM whose QEMU the OOM killer ends in its cgroup raises "VM killed by the OOM killer"', { skip: process.getuid?.() !== 0 ? 'needs root' : false, timeout: 60_000 }, async () => {
  const name = `guard-oom-${process.pid}`;
  await createVmCgroup(name, { vcpus: 1, memoryMiB: 64 });
  const target = new FakeTarget();
  const guard = new Guard({ ruleset: await loadDefaultRuleset(), target, audit: new MemoryAudit(), events: recordingBus().bus });
  const events: GuardEvent[] = [];
  const subject: VmTarget = { ...vm('oom1', 'ta', '10.9.0.2', 'xxb0'), cgroup: name };
  let alive = true;
  const resources = new VmResourceInterceptor({ targets: async () => (alive ? [subject] : []), intervalMs: 100 });
  await guard.addInterceptor({ id: resources.id, start: (emit) => resources.start((e) => { events.push(e); emit(e); }), stop: () => resources.stop() });
  await guard.start();
  try {
    const dir = cgroupMode() === 'v2' ? `/sys/fs/cgroup/strata-vm/${name}` : `/sys/fs/cgroup/memory/strata-vm/${name}`;
    await writeFile(`${dir}/${cgroupMode() === 'v2' ? 'memory.max' : 'memory.limit_in_bytes'}`, String(32 * 1024 * 1024));
    await until(() => events.some((e) => e.kind === 'resource.cpu'), { ...WAIT, what: 'a first sample' });
    // A stand-in for a QEMU that grows past its limit: joins the cgroup, then asks for 256 MiB.
    const hog = spawn('sh', ['-c', `echo $$ > ${dir}/cgroup.procs && exec "${process.execPath}" -e "Buffer.alloc(256 << 20, 1)"`], { stdio: 'ignore' });
    const exit = await new Promise<NodeJS.Signals | number | null>((resolve) => hog.once('exit', (code, signal) => resolve(signal ?? code)));
    assert.equal(exit, 'SIGKILL', 'the OOM killer ended it');
    alive = false; // the VM is gone from the driver's list: its cgroup is read once more
    await until(() => target.alerts.some((a) => a.rule === 'VM killed by the OOM killer'), { ...WAIT, what: 'the alert' });
    const alert = target.alerts.find((a) => a.rule === 'VM killed by the OOM killer')!;
    assert.equal(alert.instanceId, 'oom1');
    assert.ok(Number(alert.fields['mem.oom_kills']) >= 1);
    assert.ok(events.every((e) => e.kind !== 'resource.cpu' || e.fields['proc.name'] === 'qemu'));
  } finally {
    await guard.stop();
    await removeVmCgroup(name);
  }
});
