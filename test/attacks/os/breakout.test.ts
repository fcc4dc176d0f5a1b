/**
 * The os breakout suite: real attacks from inside a tenant container (tenant
 * `evil`), each asserting containment AND that the other tenant (`good`) keeps
 * serving, unharmed. The attacks run as root in the container — root of its user
 * namespace, which is what an attacker who owns a tenant's app gets.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, statfsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { claimSlot } from '../../levels/os/helpers.js';
import { Arena } from './arena.js';

const arena = new Arena(await claimSlot());

/** One attack: a named test that also checks the victim afterwards. */
const attack = (title: string, fn: () => Promise<void>, timeout = 60_000): void => {
  test(title, { timeout }, async () => {
    await fn();
    await arena.assertVictimUnharmed();
  });
};

const denied = (verdict: string, errno?: number): void => {
  assert.match(verdict, /^DENIED /, verdict);
  if (errno !== undefined) assert.match(verdict, new RegExp(`^DENIED ${errno} `), verdict);
};
const EPERM = 1;
const sha256 = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

describe('os breakout suite', () => {
  before(async () => arena.open(), { timeout: 120_000 });
  after(async () => arena.close(), { timeout: 120_000 });

  // ---- filesystem isolation ----

  attack("read another tenant's files: the secret appears nowhere in the attacker's view", async () => {
    const r = await arena.sh(`grep -rl ${arena.secret} / --exclude-dir=proc --exclude-dir=sys 2>/dev/null; ls /data; cat /proc/1/root/data/secret 2>&1`);
    assert.ok(!r.stdout.includes(arena.secret), r.stdout);
    assert.doesNotMatch(r.stdout, /^\/(?!proc)/m, `found: ${r.stdout}`);
  });

  attack("write the host's or another tenant's files: there is no path out of the root", async () => {
    const r = await arena.sh('echo pwned > /etc/passwd 2>&1; echo pwned > /proc/1/root/etc/shadow 2>&1; ls /proc/1/root/..; cd /../../..; pwd; ls /');
    assert.match(r.stdout, /Read-only file system/);
    assert.match(readFileSync('/etc/passwd', 'utf8'), /^root:/);
    assert.ok(!r.stdout.includes('var') && !r.stdout.includes('home'), `the root holds host dirs: ${r.stdout}`);
  });

  attack('the image is shared read-only: rewriting a binary other instances run is refused', async () => {
    const r = await arena.sh('echo x > /bin/busybox 2>&1; rm /bin/httpd 2>&1; echo done');
    assert.match(r.stdout, /Read-only file system/);
    assert.equal((await arena.sh('busybox true && echo alive', 5_000, arena.good.id)).stdout, 'alive\n');
  });

  attack('symlink on a volume pointing to / and to the host state dir: followed inside the container only', async () => {
    const stateDir = arena.options.stateDir!;
    await arena.sh(`ln -s / /data/root-link; ln -s ${stateDir} /data/state-link; ln -s ../../../../../.. /data/up-link`);
    const r = await arena.sh('ls /data/state-link/ 2>&1; cat /data/up-link/etc/passwd; ls /data/root-link/');
    assert.match(r.stdout, /No such file or directory/, 'the host state dir does not exist in the container');
    assert.doesNotMatch(r.stdout, /allocations\.json/);
    // The host side: a restart mounts, unmounts and walks nothing through the links.
    const before = sha256('/etc/passwd');
    await arena.driver.stop(arena.evil.id, { graceMs: 200 });
    await arena.driver.start(arena.evil.id);
    arena.evil.pid = Number((await arena.driver.inspect(arena.evil.id))?.info?.pid);
    assert.equal(sha256('/etc/passwd'), before);
    assert.equal((await arena.sh('readlink /data/root-link')).stdout, '/\n');
  });

  attack("read the host's layout from the mount table: no host path, id or data dir in any mount's options, root or source", async () => {
    const r = await arena.sh('cat /proc/self/mountinfo /proc/1/mountinfo /proc/self/mounts /proc/self/cgroup /proc/1/cgroup');
    assert.match(r.stdout, / \/ \/ [^\n]* - overlay /, 'the root is an overlay');
    const o = arena.options;
    for (const secret of [o.stateDir!, o.runRoot!, o.imagesDir!, o.cgroupRoot!, arena.evil.id, '/var/lib', '/run/', 'strata']) {
      assert.ok(!r.stdout.includes(secret), `the instance sees '${secret}' in:\n${r.stdout.split('\n').filter((l) => l.includes(secret)).join('\n')}`);
    }
    // The overlay's layers as the instance sees them: names relative to a directory it cannot name.
    assert.match(r.stdout, /lowerdir=lower,upperdir=upper,workdir=work/);
  });

  attack("hardlink from a volume to a file outside it (the image's, /etc/passwd): refused across file systems", async () => {
    const r = await arena.sh('ln /etc/passwd /data/passwd-link 2>&1; ln /bin/busybox /data/bb 2>&1; ln /proc/self/exe /data/exe 2>&1; echo end');
    assert.match(r.stdout, /Invalid cross-device link|Operation not permitted|cross-device/i);
    assert.doesNotMatch((await arena.sh('ls /data')).stdout, /passwd-link|^bb$|^exe$/m);
  });

  attack('CVE-2019-5736 class: overwrite the runtime through /proc/self/exe', async () => {
    const runc = '/usr/sbin/runc';
    const before = sha256(runc);
    const verdicts = [await arena.probe('open-write', '/proc/self/exe'), await arena.probe('open-write', '/proc/1/exe')];
    for (const v of verdicts) denied(v);
    // The classic entry point (replace a binary runc execs with #!/proc/self/exe) is closed by the read-only root.
    assert.match((await arena.sh('printf "#!/proc/self/exe\\n" > /bin/sh 2>&1; echo')).stdout, /Read-only file system/);
    assert.equal((await arena.sh('echo still-busybox')).stdout, 'still-busybox\n');
    assert.equal(sha256(runc), before, 'the host runc binary changed');
  });

  attack('CVE-2024-21626 class: no directory fd leaks into the container to walk out through', async () => {
    denied(await arena.probe('fd-escape'));
  });

  // ---- processes ----

  attack('see host or other-tenant processes: the pid namespace shows only its own', async () => {
    const r = await arena.sh('ps -o pid,comm');
    const lines = r.stdout.trim().split('\n').slice(1);
    assert.ok(lines.length <= 4, r.stdout);
    assert.doesNotMatch(r.stdout, /node|runc|process_api|systemd/);
    assert.match(lines[0]!, /^\s*1 /, 'its own init is pid 1');
  });

  attack('signal host and other-tenant processes by their host pids', async () => {
    const r = await arena.sh(`kill -9 ${process.pid} 2>&1; kill -9 ${arena.good.pid} 2>&1; kill -9 -1 2>&1; echo sent`, 10_000);
    assert.match(r.stdout, /sent/);
    assert.ok(process.kill(process.pid, 0));
  });

  attack("ptrace its own init and the other tenant's host pid", async () => {
    denied(await arena.probe('ptrace', '1'), EPERM);
    denied(await arena.probe('ptrace', String(arena.good.pid)));
  });

  // ---- network ----

  attack("reach another tenant's service", async () => {
    const r = await arena.sh(`timeout 2 wget -q -O - http://${arena.good.address}:${arena.good.port}/ 2>&1; echo "exit $?"`);
    assert.doesNotMatch(r.stdout, /busybox ok/);
    assert.doesNotMatch(r.stdout, /exit 0/);
  });

  attack("reach the host's private services through the bridge; the gateway's port stays reachable", async () => {
    const config = await arena.driver.address(arena.evil.id);
    const gateway = config.address.replace(/\.\d+$/, '.1');
    const blocked = await arena.sh(`timeout 2 wget -q -O - http://${gateway}:${arena.blockedPort}/ 2>&1; echo "exit $?"`);
    assert.doesNotMatch(blocked.stdout, /private host service/);
    const allowed = await arena.sh(`timeout 2 wget -q -O - http://${gateway}:${arena.allowedPort}/ 2>&1; echo`);
    assert.match(allowed.stdout, /allowed host service/, 'the firewall, not a broken network, stops the first');
  });

  attack('egress: nothing leaves the machine (no route, forwarding dropped)', async () => {
    const r = await arena.sh('ip route; timeout 2 wget -q -O - http://192.0.2.1/ 2>&1; echo "exit $?"');
    assert.doesNotMatch(r.stdout, /default/);
    assert.match(r.stdout, /unreachable/i);
  });

  attack('raw and packet sockets (spoofing, sniffing)', async () => {
    denied(await arena.probe('raw-socket'));
    denied(await arena.probe('packet-socket'));
    assert.match((await arena.sh('ping -c 1 -W 1 127.0.0.1 2>&1')).stdout, /permission denied|Operation not permitted/i);
  });

  attack('reconfigure the network: take another address, bring the link down', async () => {
    const r = await arena.sh(`ip addr add ${arena.good.address}/32 dev eth0 2>&1; ip link set eth0 down 2>&1; echo end`);
    assert.match(r.stdout, /Operation not permitted|RTNETLINK answers: Operation not permitted/);
    await arena.sh('true');
    assert.equal((await arena.driver.inspect(arena.evil.id))?.state, 'running');
  });

  // ---- kernel interfaces ----

  attack('mount: tmpfs, and cgroupfs for its release_agent (CVE-2022-0492)', async () => {
    denied(await arena.probe('mount-tmpfs'), EPERM);
    denied(await arena.probe('mount-cgroup'), EPERM);
    assert.match((await arena.sh('mount -t proc proc /tmp 2>&1')).stdout, /denied|not permitted/i);
  });

  attack('write the cgroup release_agent and create cgroups through the mounted cgroupfs', async () => {
    const r = await arena.sh('for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do echo /x > $f; done 2>&1; mkdir /sys/fs/cgroup/memory/escape 2>&1; echo end');
    assert.match(r.stdout, /Read-only file system|No such file|Permission denied/);
    assert.doesNotMatch((await arena.sh('ls /sys/fs/cgroup/memory 2>&1')).stdout, /escape/);
  });

  attack('write /proc/sys/kernel/core_pattern and /proc/sysrq-trigger', async () => {
    const before = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');
    const r = await arena.sh("echo '|/data/evil' > /proc/sys/kernel/core_pattern 2>&1; echo c > /proc/sysrq-trigger 2>&1; echo end");
    assert.match(r.stdout, /Read-only file system|Permission denied/);
    assert.equal(readFileSync('/proc/sys/kernel/core_pattern', 'utf8'), before);
  });

  attack('read kernel memory and secrets: /proc/kcore, /proc/kallsyms, /proc/keys are masked', async () => {
    // (This kernel has no /proc/kcore at all; where one exists it is masked like the others.)
    const r = await arena.sh('for f in /proc/kcore /proc/kallsyms /proc/keys /proc/timer_list; do cat $f 2>/dev/null | wc -c; done');
    assert.deepEqual(r.stdout.trim().split('\n').map(Number), [0, 0, 0, 0]);
    assert.ok(readFileSync('/proc/kallsyms', 'utf8').length > 0, 'the host itself does have kallsyms');
  });

  attack('open /dev/kvm, /dev/mem and the host disk; make device nodes', async () => {
    for (const dev of ['/dev/kvm', '/dev/mem', '/dev/vda', '/dev/sda', '/dev/loop0']) denied(await arena.probe('open', dev));
    denied(await arena.probe('mknod-mem'), EPERM);
    const r = await arena.sh('ls /dev');
    assert.doesNotMatch(r.stdout, /kvm|mem\b|vda|loop/);
  });

  attack('load a kernel module (init_module, finit_module)', async () => {
    denied(await arena.probe('init-module'), EPERM);
    denied(await arena.probe('finit-module'), EPERM);
  });

  attack('new user namespaces to regain capabilities (unshare, clone)', async () => {
    denied(await arena.probe('unshare-user'), EPERM);
    denied(await arena.probe('clone-newuser'), EPERM);
    assert.match((await arena.sh('unshare -U -r id 2>&1')).stdout, /not permitted|denied/i);
  });

  attack("join another process's namespaces (setns)", async () => {
    denied(await arena.probe('setns', '/proc/1/ns/mnt'), EPERM);
  });

  attack('chroot and pivot_root escapes', async () => {
    denied(await arena.probe('chroot'), EPERM);
    denied(await arena.probe('pivot-root'), EPERM);
  });

  attack('kexec, reboot, swapon and clock setting', async () => {
    denied(await arena.probe('kexec'), EPERM);
    denied(await arena.probe('reboot'), EPERM);
    denied(await arena.probe('swapon'), EPERM);
    denied(await arena.probe('settime'), EPERM);
  });

  attack('bpf, perf_event_open, userfaultfd and io_uring', async () => {
    for (const name of ['bpf', 'perf', 'userfaultfd', 'io-uring']) denied(await arena.probe(name), EPERM);
  });

  attack('the kernel keyring (add_key)', async () => {
    denied(await arena.probe('keyctl'), EPERM);
  });

  attack('open_by_handle_at (the "shocker" escape)', async () => {
    denied(await arena.probe('open-by-handle'), EPERM);
  });

  attack('privileges: no dangerous capability, no_new_privs set, seccomp filtering', async () => {
    const status = (await arena.sh('cat /proc/self/status')).stdout;
    const capEff = BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(status)![1]}`);
    const CAP_SYS_ADMIN = 21n;
    const CAP_NET_RAW = 13n;
    const CAP_SYS_PTRACE = 19n;
    const CAP_SYS_MODULE = 16n;
    for (const cap of [CAP_SYS_ADMIN, CAP_NET_RAW, CAP_SYS_PTRACE, CAP_SYS_MODULE]) assert.equal((capEff >> cap) & 1n, 0n, `capability ${cap}`);
    assert.match(status, /NoNewPrivs:\s+1/);
    assert.match(status, /Seccomp:\s+2/);
  });

  // ---- resources: each on a throwaway attacker instance, since the attacker may well take itself down ----

  /** Runs `fn` against a fresh instance of tenant evil (64 MiB, 0.5 vCPU, 32 MiB volume), removed afterwards. */
  const withBomb = async (fn: (id: string) => Promise<void>): Promise<void> => {
    const bomb = await arena.launch('evil', { config: { volumeMiB: 32 }, limits: { vcpus: 0.5, memoryMiB: 64, diskMiB: 64 } });
    try {
      await fn(bomb.id);
    } finally {
      await arena.remove(bomb.id);
    }
  };
  const statsOf = async (id: string): Promise<{ pids: number; oomKills: number; memoryBytes: number; cpuUsageNs: number }> =>
    (await arena.driver.inspect(id))?.info?.stats as { pids: number; oomKills: number; memoryBytes: number; cpuUsageNs: number };

  attack('fork bomb: stopped at the pids limit; the host and the other tenant still fork', async () => {
    await withBomb(async (id) => {
      const bomb = arena.sh('bomb() { bomb | bomb & }; bomb; sleep 5', 15_000, id).catch(() => null);
      let peak = 0;
      for (let i = 0; i < 40; i++) {
        peak = Math.max(peak, (await statsOf(id))?.pids ?? 0);
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      assert.ok(peak > 100 && peak <= 512, `peak pids ${peak}: the bomb ran and stopped at the limit`);
      assert.equal((await arena.sh('echo forks', 5_000, arena.good.id)).stdout, 'forks\n');
      await arena.driver.stop(id, { graceMs: 0 });
      await bomb;
    });
  }, 90_000);

  attack('memory bomb: only the attacking instance is OOM-killed', async () => {
    await withBomb(async (id) => {
      const r = await arena.driver.run(id, ['/bin/probe', 'memhog', '512'], { timeoutMs: 30_000 });
      assert.notEqual(r.exitCode, 0, `the hog survived: ${r.stdout}`);
      const stats = await statsOf(id);
      assert.ok(stats.oomKills >= 1, `oom kills ${stats.oomKills}`);
      assert.ok(stats.memoryBytes <= 64 * 1024 * 1024, `memory ${stats.memoryBytes}`);
      assert.equal((await statsOf(arena.good.id)).oomKills, 0);
    });
  });

  attack('disk fill: the volume ends at its size; /tmp at its tmpfs size; the host disk is untouched', async () => {
    await withBomb(async (id) => {
      const freeBefore = statfsSync('/').bavail * statfsSync('/').bsize;
      const r = await arena.sh('dd if=/dev/zero of=/data/fill bs=1M count=200; dd if=/dev/zero of=/tmp/fill bs=1M count=200; du -m /data/fill /tmp/fill', 60_000, id);
      assert.match(r.stdout, /No space left on device/);
      const sizes = r.stdout.trim().split('\n').slice(-2).map((l) => Number(l.split(/\s+/)[0]));
      assert.ok(sizes[0]! <= 32 && sizes[1]! <= 64, `filled ${sizes.join(' / ')} MiB`);
      const freeAfter = statfsSync('/').bavail * statfsSync('/').bsize;
      assert.ok(freeBefore - freeAfter < 64 * 1024 * 1024, `host free space dropped by ${(freeBefore - freeAfter) >> 20} MiB`);
    });
  }, 90_000);

  attack('CPU hog: capped at its vcpus; the other tenant keeps its share', async () => {
    await withBomb(async (id) => {
      const before = (await statsOf(id)).cpuUsageNs;
      const hog = arena.sh('/bin/probe cpuhog 3 & /bin/probe cpuhog 3 & /bin/probe cpuhog 3 & wait', 20_000, id);
      const started = Date.now();
      const latencies: number[] = [];
      while (Date.now() - started < 2_500) {
        const t = Date.now();
        await arena.assertVictimUnharmed();
        latencies.push(Date.now() - t);
      }
      await hog;
      const used = (await statsOf(id)).cpuUsageNs - before;
      const wall = (Date.now() - started) * 1e6;
      assert.ok(used / wall < 0.75, `the hog used ${(used / wall).toFixed(2)} CPUs with a 0.5 vCPU limit`);
      latencies.sort((a, b) => a - b);
      assert.ok(latencies[Math.floor(latencies.length / 2)]! < 500, `victim median ${latencies[Math.floor(latencies.length / 2)]} ms`);
    });
  });
});
