/**
 * The guard against the os breakout suite, live: bpftrace attached, the
 * default ruleset, real attacks from inside a tenant container.
 *
 * Precision first: a web instance runs a benign suite as its workload (web
 * serving, package-manager-like file churn in /tmp and on its volume, a build,
 * log rotation, cron-like periodic jobs) and the guard raises no alert at all.
 *
 * Effectiveness: each attack of test/attacks/os/breakout.test.ts that makes a
 * call the guard can see, plus the guard's own brief (shell in a web instance,
 * dropper, privilege change, seccomp probing, miner CPU pattern, pool port),
 * raises the alert named in the table, on the attacking instance. The attacks
 * the table leaves out are contained without making a call worth an alert
 * (reads, `ps`, signals that find no process, the network refusing a route);
 * `SILENT` says why for each.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { bpfAvailable, ensureTracefs } from '../../../src/levels/os/guard/interceptor.js';
import { claimSlot, httpGet } from '../../levels/os/helpers.js';
import { GuardedArena } from './guard-arena.js';
import type { Launched } from './arena.js';

const availability = bpfAvailable();
if (availability.available) ensureTracefs(); // so the cases can ask which tracepoints this kernel has
const arena = new GuardedArena(await claimSlot());

/** The benign workload, as a web instance's entrypoint; it writes /data/done when finished. */
const BENIGN = String.raw`
httpd -p 8080 -h /www
mkdir -p /data/pkg /data/build /data/log /tmp/pkg
# package-manager-like churn: unpack, move into place, remove the old
for i in $(seq 200); do echo "file $i" > /tmp/pkg/f$i; done
for i in $(seq 200); do mv /tmp/pkg/f$i /data/pkg/f$i; done
rm -rf /data/pkg /tmp/pkg; mkdir -p /data/pkg
for i in $(seq 100); do echo "v2 $i" > /data/pkg/g$i.new && mv /data/pkg/g$i.new /data/pkg/g$i; done
# a build: sources, one "compiler" process per file, a link step, tests run in a loop
for i in $(seq 30); do echo "unit $i $(date +%s)" > /data/build/src$i.c; done
for f in /data/build/*.c; do sh -c "md5sum $f > $f.o && awk 'BEGIN { s = 0; for (i = 0; i < 20000; i++) s += i; print s }' >> $f.o"; done
cat /data/build/*.o > /data/build/app
n=0; while [ $n -lt 2000 ]; do n=$((n + 1)); done
# log rotation
for i in $(seq 300); do echo "GET /index.html 200 $i" >> /data/log/access.log; done
mv /data/log/access.log /data/log/access.log.1 && gzip -f /data/log/access.log.1 && : > /data/log/access.log
# cron-like periodic jobs
printf 'date >> /data/cron.out\nls /data/pkg | wc -l >> /data/cron.out\n' > /data/job.sh
for t in 1 2 3 4 5; do sh /data/job.sh; sleep 1; done
echo done > /data/done
exec sleep 3600
`;

interface Case {
  /** The breakout suite's title, or what the guard's brief names. */
  attack: string;
  rule: string;
  run(a: GuardedArena): Promise<unknown>;
  /** The instance the alert names; default the attacker. */
  on?: (a: GuardedArena) => string;
  /** A tracepoint the kernel must have for the guard to see this call (a kernel built without it has no such call at all). */
  needs?: string;
  timeoutMs?: number;
}

/** The web instance whose server spawns the shell (launched by its case). */
let webApp: Launched | undefined;

const gatewayOf = async (a: GuardedArena): Promise<string> => (await a.driver.address(a.evil.id)).address.replace(/\.\d+$/, '.1');

const CASES: Case[] = [
  // ---- test/attacks/os/breakout.test.ts ----
  { attack: "write the host's or another tenant's files", rule: 'Write below etc', run: (a) => a.sh('echo pwned > /etc/passwd 2>&1; true') },
  { attack: 'the image is shared read-only: rewriting a binary', rule: 'Write below binary dir', run: (a) => a.sh('echo x > /bin/busybox 2>&1; true') },
  { attack: 'CVE-2019-5736 class: overwrite the runtime through /proc/self/exe', rule: 'Write through proc exe', run: (a) => a.probe('open-write', '/proc/self/exe') },
  { attack: "ptrace its own init and the other tenant's host pid", rule: 'Ptrace attempt', run: (a) => a.probe('ptrace', '1') },
  { attack: "reach another tenant's service", rule: 'Unexpected outbound connection', run: (a) => a.sh(`timeout 2 wget -q -O - http://${a.good.address}:${a.good.port}/ 2>&1; true`) },
  { attack: "reach the host's private services through the bridge", rule: 'Unexpected outbound connection',
    run: async (a) => a.sh(`timeout 2 nc -w 1 ${await gatewayOf(a)} ${a.blockedPort} </dev/null 2>&1; true`) },
  { attack: 'raw and packet sockets (spoofing, sniffing)', rule: 'Raw socket', run: (a) => a.probe('packet-socket') },
  { attack: 'mount: tmpfs, and cgroupfs for its release_agent (CVE-2022-0492)', rule: 'Mount attempt', run: (a) => a.probe('mount-cgroup') },
  { attack: 'write the cgroup release_agent', rule: 'Write to kernel interface', run: (a) => a.sh('echo /x > /sys/fs/cgroup/memory/release_agent 2>&1; true') },
  { attack: 'write /proc/sys/kernel/core_pattern and /proc/sysrq-trigger', rule: 'Write to kernel interface', run: (a) => a.sh("echo '|/data/evil' > /proc/sys/kernel/core_pattern 2>&1; true") },
  { attack: 'make device nodes', rule: 'Denied breakout syscall', run: (a) => a.probe('mknod-mem') },
  { attack: 'load a kernel module (init_module, finit_module)', rule: 'Kernel module load attempt', run: (a) => a.probe('finit-module'), needs: 'syscalls/sys_exit_finit_module' },
  { attack: 'new user namespaces to regain capabilities (unshare, clone)', rule: 'Denied breakout syscall', run: (a) => a.probe('unshare-user') },
  { attack: "join another process's namespaces (setns)", rule: 'Denied breakout syscall', run: (a) => a.probe('setns', '/proc/1/ns/mnt') },
  { attack: 'chroot and pivot_root escapes', rule: 'Mount attempt', run: (a) => a.probe('pivot-root') },
  { attack: 'kexec, reboot, swapon and clock setting', rule: 'Denied breakout syscall', run: (a) => a.probe('reboot') },
  { attack: 'bpf, perf_event_open, userfaultfd and io_uring', rule: 'Denied breakout syscall', run: (a) => a.probe('bpf') },
  { attack: 'the kernel keyring (add_key)', rule: 'Denied breakout syscall', run: (a) => a.probe('keyctl') },
  { attack: 'open_by_handle_at (the "shocker" escape)', rule: 'Denied breakout syscall', run: (a) => a.probe('open-by-handle') },
  // ---- the guard's brief ----
  // The web server itself runs the shell (a CGI, as a web exploit makes it): a `runc exec` would be an operator's way in, not the workload's.
  { attack: 'shell spawned in a web container', rule: 'Shell in web instance', run: async (a) => a.viaWebApp(webApp ??= await a.launchWebApp(), 'shell'), on: () => webApp!.id },
  { attack: 'dropper: a file written to /tmp, then executed', rule: 'Download and execute', run: (a) => a.sh('cp /bin/busybox /tmp/dropped; /tmp/dropped true 2>&1; true') },
  { attack: 'privilege change: a non-root process asks for root', rule: 'Privilege escalation to root', run: (a) => a.probe('regain-root') },
  { attack: 'seccomp denial burst: probing the filter', rule: 'Seccomp denial burst', run: (a) => a.sh('for i in $(seq 25); do /bin/probe userfaultfd; done >/dev/null') },
  { attack: 'crypto miner: a known pool port', rule: 'Crypto miner', run: async (a) => a.sh(`nc -w 1 ${await gatewayOf(a)} 3333 </dev/null 2>&1; true`) },
  { attack: 'crypto miner: sustained full CPU share', rule: 'Crypto miner CPU pattern', run: (a) => a.sh('/bin/probe cpuhog 15 & /bin/probe cpuhog 15 & wait', 30_000), timeoutMs: 30_000 },
];

/** Breakout cases with no alert, and why that is right. */
const SILENT: Record<string, string> = {
  "read another tenant's files": 'reads are not watched; the isolation shows nothing to read',
  'symlink on a volume': 'a symlink on its own volume is ordinary',
  'hardlink from a volume': 'refused as EXDEV, which ordinary programs also meet',
  'CVE-2024-21626 class': 'reads /proc/*/fd links only',
  "read the host's layout from the mount table": 'reads of its own mountinfo and cgroup files',
  'see host or other-tenant processes': '`ps` is ordinary',
  'signal host and other-tenant processes': 'the pids do not exist in its namespace (ESRCH, not a refusal)',
  'egress: nothing leaves the machine': 'port 80 egress is ordinary for a web app; there is no route',
  'reconfigure the network': 'netlink answers the refusal in a message, not a syscall error',
  'read kernel memory and secrets': 'reads of masked files',
  'privileges: no dangerous capability': 'reads /proc/self/status',
  'memory bomb': 'the OOM killer, not a call (no OOM interceptor yet)',
  'disk fill': 'writes to its own volume and /tmp',
  'CPU hog': 'three seconds; the miner pattern needs eight of ten',
};

describe('guard on the os breakout suite', { skip: availability.available ? false : availability.reason }, () => {
  before(async () => arena.open(), { timeout: 180_000 });
  after(async () => arena.close(), { timeout: 120_000 });

  test('precision: a benign web workload raises no alert', { timeout: 120_000 }, async () => {
    const mark = arena.mark();
    const calm = await arena.launchAs('web', 'good', { config: { volumeMiB: 16, args: ['sh', '-c', BENIGN] } });
    const deadline = Date.now() + 90_000;
    let served = 0;
    for (;;) {
      const answer = await httpGet(calm.address, 8080, '/').catch(() => null);
      if (answer?.status === 200) served++;
      const done = await arena.driver.run(calm.id, ['cat', '/data/done']).catch(() => null);
      if (done?.stdout.trim() === 'done') break;
      assert.ok(Date.now() < deadline, 'the benign suite did not finish');
      await sleep(200);
    }
    await sleep(1500); // the last per-second aggregates
    await arena.guard.drained();
    assert.ok(served > 0, 'the instance served the web meanwhile');
    assert.ok(arena.bpf.stats().emitted > 300, `the guard saw the workload (${arena.bpf.stats().emitted} events)`);
    const raised = arena.alertsSince(mark);
    assert.deepEqual(raised.map((a) => `${a.rule}: ${a.output}`), []);
    await arena.remove(calm.id);
  });

  for (const c of CASES) {
    // Without the tracepoint the kernel was built without the call itself (no modules, no kexec): nothing to load, and watching
    // every syscall's exit to see the attempt costs +50 % (bench/guard-overhead), so it is not watched.
    const missing = c.needs && !existsSync(`/sys/kernel/tracing/events/${c.needs}`) ? `this kernel has no ${c.needs}` : false;
    test(`effectiveness: ${c.attack} → ${c.rule}`, { timeout: 90_000, skip: missing }, async () => {
      const mark = arena.mark();
      await c.run(arena);
      const alert = await arena.waitFor(c.rule, c.on ? c.on(arena) : arena.evil.id, mark, c.timeoutMs);
      assert.ok(alert.auditIndex >= 0);
    });
  }

  test('effectiveness: fork bomb (no exec at all) → Fork storm', { timeout: 90_000 }, async () => {
    const bomb = await arena.launchAs('worker', 'evil', { config: { volumeMiB: 32 }, limits: { vcpus: 0.5, memoryMiB: 64, diskMiB: 64 } });
    try {
      const mark = arena.mark();
      const running = arena.sh('bomb() { bomb | bomb & }; bomb; sleep 5', 15_000, bomb.id).catch(() => null);
      await arena.waitFor('Fork storm', bomb.id, mark);
      await arena.driver.stop(bomb.id, { graceMs: 0 });
      await running;
    } finally {
      await arena.remove(bomb.id);
    }
  });

  test('every breakout case is in the table, or named silent with a reason', () => {
    const source = readFileSync(fileURLToPath(new URL('../../../../test/attacks/os/breakout.test.ts', import.meta.url)), 'utf8');
    const titles = [...source.matchAll(/attack\((['"])(.+?)\1,/g)].map((m) => m[2]!);
    assert.ok(titles.length >= 30, `found ${titles.length} attacks`);
    const covered = [...CASES.map((c) => c.attack), 'fork bomb', ...Object.keys(SILENT)];
    const missing = titles.filter((t) => !covered.some((c) => t.includes(c)));
    assert.deepEqual(missing, [], 'breakout cases without an expected alert or a reason');
  });
});
