/**
 * How an isolate host is started: a chain of small programs, each adding one
 * wall before node starts, composed here and checked once at provision.
 *
 *   sh        writes its own pid into the host's cgroup(s), then execs on
 *   unshare   new mount, network (loopback only, down), IPC, UTS and pid
 *             namespaces with a private /proc; kills the host when it dies
 *   setpriv   unprivileged uid/gid, no supplementary groups, no capabilities
 *             (bounding and inheritable sets emptied), no_new_privs
 *   seccomp-exec  the seccomp filter (when built by setup)
 *   node      the host script
 *
 * Each program is used only when present (and the whole chain only as root);
 * `SandboxFacilities.description` says which walls are up, for provision's reason.
 */
import { accessSync, constants } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { detectCgroups, type CgroupMode } from './cgroup.js';

export interface SandboxFacilities {
  cgroups: CgroupMode | null;
  unshare: string | null;
  setpriv: string | null;
  seccompHelper: string | null;
  /** One line per wall, e.g. "cgroup v1 (memory, cpu, pids)". */
  description: string[];
}

const SECCOMP_HELPER = fileURLToPath(new URL('./seccomp-exec', import.meta.url));
export const HOST_SCRIPT = fileURLToPath(new URL('../host/main.js', import.meta.url));

function executable(path: string): string | null {
  try { accessSync(path, constants.X_OK); return path; } catch { return null; }
}
const which = (name: string): string | null => executable(`/usr/bin/${name}`) ?? executable(`/bin/${name}`);

/** What this machine offers; `enabled: false` turns every wall off (machines without root). */
export function probeSandbox(enabled: boolean): SandboxFacilities {
  const root = process.getuid?.() === 0;
  if (!enabled || !root) {
    return { cgroups: null, unshare: null, setpriv: null, seccompHelper: null, description: [enabled ? 'no sandbox: not root' : 'no sandbox: turned off'] };
  }
  const facilities: SandboxFacilities = {
    cgroups: detectCgroups(),
    unshare: which('unshare'),
    setpriv: which('setpriv'),
    seccompHelper: executable(SECCOMP_HELPER),
    description: [],
  };
  const d = facilities.description;
  d.push(facilities.cgroups ? `cgroup ${facilities.cgroups} (memory, cpu, pids)` : 'no cgroup (controllers missing)');
  d.push(facilities.unshare ? 'namespaces (mount, net, ipc, uts, pid)' : 'no namespaces (unshare missing)');
  d.push(facilities.setpriv ? 'unprivileged uid, no capabilities, no_new_privs' : 'runs as root (setpriv missing)');
  d.push(facilities.seccompHelper ? 'seccomp deny-list' : 'no seccomp (helper not built: run scripts/setup.d/30-env.sh)');
  return facilities;
}

export interface HostCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
}

/** The command line that starts one host inside its walls. */
export function hostCommand(f: SandboxFacilities, opts: { uid: number; cgroupProcs: string[] }): HostCommand {
  const node = [process.execPath, '--no-warnings', HOST_SCRIPT];
  const env: Record<string, string> = { PATH: '/usr/bin:/bin', NODE_ENV: 'production' };
  let chain = node;
  if (f.seccompHelper && f.setpriv) chain = [f.seccompHelper, ...chain];
  if (f.setpriv) {
    chain = [f.setpriv, `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all', '--no-new-privs', '--', ...chain];
  }
  if (f.unshare) {
    chain = [f.unshare, '--mount', '--net', '--ipc', '--uts', '--pid', '--fork', '--kill-child=SIGKILL', '--mount-proc', '--', ...chain];
  }
  if (opts.cgroupProcs.length > 0) {
    env.STRATA_CGROUP_PROCS = opts.cgroupProcs.join(' ');
    chain = ['/bin/sh', '-c', 'for f in $STRATA_CGROUP_PROCS; do echo $$ > "$f" || exit 97; done; unset STRATA_CGROUP_PROCS; exec "$@"', 'strata-env-host', ...chain];
  }
  const [command, ...args] = chain as [string, ...string[]];
  return { command, args, env };
}
