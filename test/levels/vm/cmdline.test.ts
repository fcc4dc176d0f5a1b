/** Golden tests of the QEMU command line, its validators, the launcher argv and the limit values: no QEMU is started. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cgroupLimitValues } from '../../../src/levels/vm/cgroup.js';
import { MACHINE_RAM_MIB, buildCommandLine, kernelCommandLine, validateCommandLine, type CommandLine, type LaunchConfig } from '../../../src/levels/vm/cmdline.js';
import { hostTscKhz } from '../../../src/levels/vm/images.js';
import { launcherArgv, vmUser } from '../../../src/levels/vm/launch.js';
import { guestHostname } from '../../../src/levels/vm/driver.js';
import { macFor } from '../../../src/levels/vm/network.js';
import { parseVmConfig } from '../../../src/levels/vm/options.js';

const base: LaunchConfig = {
  name: 'strata-i1', arch: 'x86_64', accelerator: 'tcg', vcpus: 1, memoryMiB: 128,
  kernel: '/img/x86_64/vmlinux', initrd: '/img/x86_64/initramfs.cpio.gz', append: 'console=ttyS0 quiet',
  serialLog: '/s/i1/run/console.log', qmpSocket: '/s/i1/run/qmp.sock', pidFile: '/s/i1/run/qemu.pid',
  network: { tap: 'svt0123456789ab', mac: '52:54:00:12:34:56' }, disk: '/s/i1/disk.qcow2',
  identity: 'ip=10.89.0.2/24 host=web-1 mac=52:54:00:12:34:56 seed=00ff',
};

const SANDBOX = ['-sandbox', 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny'];
const CONTROL = ['-name', 'strata-i1', '-qmp', 'unix:/s/i1/run/qmp.sock,server=on,wait=off', '-pidfile', '/s/i1/run/qemu.pid', '-S', '-no-reboot'];

describe('QEMU command line', () => {
  test('x86_64 under TCG: microvm, direct kernel boot, a prepared tap, a qcow2 disk, sandbox, QMP', () => {
    assert.deepEqual(buildCommandLine(base), {
      binary: 'qemu-system-x86_64',
      args: [
        '-machine', 'microvm,x-option-roms=off', '-accel', 'tcg,tb-size=64', '-smp', '1', '-m', '128M',
        '-nodefaults', '-no-user-config', '-nographic', '-serial', 'file:/s/i1/run/console.log',
        '-kernel', '/img/x86_64/vmlinux', '-initrd', '/img/x86_64/initramfs.cpio.gz', '-append', 'console=ttyS0 quiet',
        '-netdev', 'tap,id=net0,ifname=svt0123456789ab,script=no,downscript=no', '-device', 'virtio-net-device,netdev=net0,mac=52:54:00:12:34:56',
        '-blockdev', 'driver=qcow2,node-name=disk0,file.driver=file,file.filename=/s/i1/disk.qcow2', '-device', 'virtio-blk-device,drive=disk0',
        '-fw_cfg', 'name=opt/strata/identity,string=ip=10.89.0.2/24 host=web-1 mac=52:54:00:12:34:56 seed=00ff',
        ...SANDBOX, ...CONTROL,
      ],
    });
  });

  test('aarch64 under TCG: virt with GICv3 and a Cortex-A72; a restore reads fd 3; no NIC when there is no network', () => {
    const cmd = buildCommandLine({ ...base, arch: 'aarch64', network: null, disk: null, incomingFd: 3, kernel: '/img/aarch64/vmlinuz', initrd: '/img/aarch64/initramfs.cpio.gz' });
    assert.equal(cmd.binary, 'qemu-system-aarch64');
    assert.deepEqual(cmd.args.slice(0, 6), ['-machine', 'virt,gic-version=3', '-accel', 'tcg,tb-size=64', '-cpu', 'cortex-a72']);
    assert.deepEqual(cmd.args.slice(cmd.args.indexOf('-nic'), cmd.args.indexOf('-nic') + 2), ['-nic', 'none']);
    assert.deepEqual(cmd.args.slice(-2), ['-incoming', 'fd:3']);
    assert.equal(validateCommandLine(cmd, 'aarch64'), cmd);
    assert.ok(!cmd.args.includes('-kernel') && !cmd.args.includes('-initrd') && !cmd.args.includes('-append'), 'a resumed guest brings its kernel in its memory');
    const check = (args: string[]): void => void validateCommandLine({ binary: cmd.binary, args }, 'aarch64');
    assert.throws(() => check(cmd.args.filter((x, i) => x !== '-incoming' && cmd.args[i - 1] !== '-incoming')), /safe absolute paths/, 'a boot needs its kernel');
    assert.throws(() => check([...cmd.args, '-kernel', '../vmlinuz']), /safe absolute paths/);
  });

  test('KVM passes the host CPU through', () => {
    const args = buildCommandLine({ ...base, accelerator: 'kvm' }).args;
    assert.deepEqual(args.slice(2, 6), ['-accel', 'kvm', '-cpu', 'host']);
  });

  test('the generated lines pass validation', () => {
    const cmd = buildCommandLine(base);
    assert.equal(validateCommandLine(cmd, 'x86_64'), cmd);
  });

  test('the serial console: a unix-socket chardev the daemon reads (QEMU keeps no log of its own), and nothing else as a chardev', () => {
    const cmd = buildCommandLine({ ...base, consoleSocket: '/s/i1/run/console.sock' });
    const at = cmd.args.indexOf('-nographic') + 1;
    assert.deepEqual(cmd.args.slice(at, at + 4), [
      '-chardev', 'socket,id=serial0,path=/s/i1/run/console.sock,server=on,wait=off', '-serial', 'chardev:serial0',
    ]);
    assert.equal(validateCommandLine(cmd, 'x86_64'), cmd);
    const check = (args: string[]): void => void validateCommandLine({ binary: cmd.binary, args }, 'x86_64');
    const chardev = cmd.args[at + 1]!;
    assert.throws(() => check(cmd.args.map((a) => (a === chardev ? chardev.replace('/s/i1/run/console.sock', '../console.sock') : a))), /serial chardev/);
    assert.throws(() => check(cmd.args.map((a) => (a === chardev ? chardev.replace('socket,', 'pty,') : a))), /serial chardev/);
    assert.throws(() => check(cmd.args.map((a) => (a === chardev ? `${chardev},logfile=/s/i1/run/console.log` : a))), /serial chardev/, 'an unbounded QEMU-written log is refused');
    assert.throws(() => check([...cmd.args, '-chardev', 'socket,id=mon,path=/s/m.sock,server=on,wait=off']), /serial chardev/);
    assert.throws(() => check([...buildCommandLine(base).args, '-chardev', 'file,id=x,path=/s/x']), /-chardev only as the serial console/);
  });

  const refused = (mutate: (args: string[]) => string[], arch: 'x86_64' | 'aarch64' = 'x86_64', binary = 'qemu-system-x86_64'): RegExp | null => {
    const cmd: CommandLine = { binary, args: mutate(buildCommandLine(base).args) };
    try {
      validateCommandLine(cmd, arch);
      return null;
    } catch (e) {
      return new RegExp((e as Error).message.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'));
    }
  };
  const swap = (args: string[], from: string, to: string): string[] => args.map((a) => (a === from ? to : a));

  test('validation refuses what would weaken isolation', () => {
    assert.match(String(refused((a) => [...a, '-runas', 'nobody'])), /options not allowed: -runas/);
    assert.match(String(refused((a) => swap(a, 'on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny', 'on'))), /sandbox/);
    assert.match(String(refused((a) => a.filter((x) => x !== '-nodefaults'))), /missing -nodefaults/);
    const tap = 'tap,id=net0,ifname=svt0123456789ab,script=no,downscript=no';
    assert.match(String(refused((a) => swap(a, tap, 'tap,id=net0,ifname=svt0123456789ab,script=/tmp/x,downscript=no'))), /prepared tap/);
    assert.match(String(refused((a) => swap(a, tap, 'user,id=net0,hostfwd=tcp:0.0.0.0:40001-:80'))), /prepared tap/);
    assert.match(String(refused((a) => swap(a, tap, 'bridge,id=net0,br=svb0'))), /prepared tap/);
    assert.match(String(refused((a) => [...a, '-device', 'virtio-9p-device,fsdev=f0'])), /only the virtio-net device/);
    const blockdev = 'driver=qcow2,node-name=disk0,file.driver=file,file.filename=/s/i1/disk.qcow2';
    assert.match(String(refused((a) => swap(a, blockdev, 'driver=qcow2,node-name=disk0,file.driver=file,file.filename=/dev/sda'.replace('/dev/sda', '../x')))), /safe absolute path/);
    assert.match(String(refused((a) => swap(a, blockdev, 'driver=host_device,node-name=disk0,filename=/dev/sda'))), /qcow2 file/);
    assert.match(String(refused((a) => a.filter((x, i) => x !== blockdev && a[i + 1] !== blockdev))), /only the virtio-net device and the instance disk/);
    const identity = 'name=opt/strata/identity,string=ip=10.89.0.2/24 host=web-1 mac=52:54:00:12:34:56 seed=00ff';
    assert.match(String(refused((a) => swap(a, identity, 'name=opt/strata/identity,file=/etc/shadow'))), /fw_cfg/);
    assert.match(String(refused((a) => swap(a, identity, 'name=etc/other,string=x'))), /fw_cfg/);
    assert.match(String(refused((a) => [...a, '-incoming', 'exec:cat /x'])), /incoming/);
    assert.match(String(refused((a) => [...a, '-incoming', 'tcp:0.0.0.0:4444'])), /incoming/);
    const receiver = buildCommandLine({ ...base, incomingDefer: true });
    assert.deepEqual(receiver.args.slice(-2), ['-incoming', 'defer']);
    assert.equal(validateCommandLine(receiver, 'x86_64'), receiver);
    assert.match(String(refused((a) => swap(a, '/img/x86_64/vmlinux', 'relative/vmlinux'))), /safe absolute paths/);
    assert.match(String(refused((a) => swap(a, 'console=ttyS0 quiet', 'console=ttyS0 "quoted"'))), /-append/);
    assert.match(String(refused((a) => swap(a, '128M', '16M'))), /-m must be/);
    assert.match(String(refused((a) => a, 'aarch64', 'qemu-system-x86_64')), /binary must be qemu-system-aarch64.*-machine must be 'virt,gic-version=3'/);
  });

  test('guest kernel command line: quiet, trimmed, TSC frequency under TCG on x86_64, network and service from strata.*', () => {
    assert.equal(
      kernelCommandLine({ arch: 'x86_64', accelerator: 'tcg', tscKhz: 2100000, port: 8080, command: 'echo hi', hostname: 'web-1', network: { addressCidr: '10.89.0.2/24' }, seed: '00ff' }),
      'console=ttyS0 quiet panic=-1 mitigations=off cryptomgr.notests audit=0 lsm= nowatchdog init_on_free=1 pci=off tsc_early_khz=2100000 tsc=reliable '
      + 'strata.hostname=web-1 strata.port=8080 strata.ip=10.89.0.2/24 strata.seed=00ff strata.cmd=ZWNobyBoaQ==',
    );
    assert.equal(
      kernelCommandLine({ arch: 'aarch64', accelerator: 'tcg', tscKhz: 2100000, port: 80, command: null, hostname: 'probe', network: null, probe: true }),
      'console=ttyAMA0 quiet panic=-1 mitigations=off cryptomgr.notests audit=0 lsm= nowatchdog init_on_free=1 strata.hostname=probe strata.port=80 strata.probe=1',
    );
  });

  test('launcher: join the cgroup, drop to the VM user with no capabilities, exec QEMU', () => {
    const argv = launcherArgv({ binary: 'qemu-system-x86_64', args: ['-S'] }, { name: 'strata-vm', uid: 999, gid: 998 });
    assert.deepEqual(argv, [
      '/bin/sh', '-c', 'for f in $STRATA_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; exec "$@"', 'strata-vm-launch',
      'setpriv', '--reuid=999', '--regid=998', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--',
      'qemu-system-x86_64', '-S',
    ]);
    assert.deepEqual(vmUser('root:x:0:0::/root:/bin/sh\nnobody:x:65534:65534::/:/usr/sbin/nologin\n'), { name: 'nobody', uid: 65534, gid: 65534 });
    assert.deepEqual(vmUser('strata-vm:x:999:997::/:/usr/sbin/nologin\nnobody:x:65534:65534::/:/x\n'), { name: 'strata-vm', uid: 999, gid: 997 });
  });

  test('cgroup limits: vCPUs × one core, guest RAM + QEMU overhead, a pids cap', () => {
    assert.deepEqual(cgroupLimitValues({ vcpus: 2, memoryMiB: 128 }), { cpuQuotaUs: 200_000, periodUs: 100_000, memoryBytes: (128 + 192) * 1024 * 1024, pidsMax: 256 });
    // aarch64's flash banks are RAM a snapshot reads in: the limit holds them too.
    assert.equal(cgroupLimitValues({ vcpus: 1, memoryMiB: 128, machineMiB: MACHINE_RAM_MIB.aarch64 }).memoryBytes, (128 + 128 + 192) * 1024 * 1024);
  });

  test('host TSC frequency only when constant and known', () => {
    assert.equal(hostTscKhz('flags\t: fpu tsc constant_tsc tsc_known_freq\ncpu MHz\t\t: 2100.000\n'), 2_100_000);
    assert.equal(hostTscKhz('flags\t: fpu tsc constant_tsc\ncpu MHz\t\t: 2100.000\n'), null);
  });

  test('config: strict, defaults to the host arch and port 80', () => {
    assert.deepEqual(parseVmConfig({}, 'x86_64'), { arch: 'x86_64', port: 80, command: null });
    assert.deepEqual(parseVmConfig({ arch: 'aarch64', port: 8080, command: 'x' }, 'x86_64'), { arch: 'aarch64', port: 8080, command: 'x' });
    assert.throws(() => parseVmConfig({ arch: 'riscv64' }, 'x86_64'), { code: 'STRATA_ERR_VALIDATION' });
    assert.throws(() => parseVmConfig({ ports: 80 }, 'x86_64'), { code: 'STRATA_ERR_VALIDATION' });
  });

  test('identity: stable MAC in 52:54:00, hostname safe for the kernel command line', () => {
    assert.match(macFor('i1'), /^52:54:00(:[0-9a-f]{2}){3}$/);
    assert.equal(macFor('i1'), macFor('i1'));
    assert.notEqual(macFor('i1'), macFor('i2'));
    assert.equal(guestHostname('My Web_Site!'), 'my-web-site');
    assert.equal(guestHostname('***'), 'strata-vm');
  });
});
