/**
 * The built-in images, made from what Debian installed on this machine:
 *
 *  - `busybox`: Debian's busybox-static with a link per applet, a passwd file, and
 *    `/www/index.html`; it runs `httpd` on port 8080 by default.
 *  - `node`: the host's Node.js binary with exactly the libraries `ldd` names,
 *    the dynamic loader, and the CA bundle; busybox as `/bin/sh` for debugging.
 *    It runs a tiny HTTP server on port 8080 by default.
 *
 * Each build goes to a staging directory and is committed whole; `ensureBuiltinImages`
 * skips an image whose manifest records the same inputs (binary hashes), so the
 * setup step is quick when nothing changed.
 */
import { copyFile, mkdir, symlink, writeFile, chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { run } from './exec.js';
import { sha256File } from '../../core/hash.js';
import { ImageStore, type ImageRunConfig } from './images.js';

export interface BuiltinSources {
  busybox: string;
  node: string;
  caBundle: string;
}

export const DEFAULT_SOURCES: BuiltinSources = {
  busybox: '/bin/busybox',
  node: process.execPath,
  caBundle: '/etc/ssl/certs/ca-certificates.crt',
};

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n';
const GROUP = 'root:x:0:\nnogroup:x:65534:\n';
const BASE_DIRS = ['bin', 'dev', 'etc', 'proc', 'sys', 'tmp', 'root', 'data'];

export const BUSYBOX_CONFIG: ImageRunConfig = { args: ['/bin/httpd', '-f', '-p', '8080', '-h', '/www'], env: [], cwd: '/', port: 8080 };

const NODE_SERVER = "require('http').createServer((q,s)=>s.end('node ok\\n')).listen(Number(process.env.PORT||8080))";
export const NODE_CONFIG: ImageRunConfig = {
  args: ['/usr/bin/node', '-e', NODE_SERVER],
  env: ['SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt'],
  cwd: '/',
  port: 8080,
};

async function baseLayout(rootfs: string, busybox: string): Promise<void> {
  for (const dir of BASE_DIRS) await mkdir(join(rootfs, dir), { recursive: true });
  await chmod(join(rootfs, 'tmp'), 0o1777);
  await chmod(join(rootfs, 'root'), 0o700);
  await writeFile(join(rootfs, 'etc/passwd'), PASSWD);
  await writeFile(join(rootfs, 'etc/group'), GROUP);
  await writeFile(join(rootfs, 'etc/hostname'), 'instance\n');
  await copyFile(busybox, join(rootfs, 'bin/busybox'));
  await chmod(join(rootfs, 'bin/busybox'), 0o755);
}

async function linkApplets(rootfs: string, busybox: string): Promise<void> {
  const { stdout } = await run(busybox, ['--list']);
  for (const applet of stdout.split('\n').map((a) => a.trim()).filter((a) => a && a !== 'busybox')) {
    await symlink('busybox', join(rootfs, 'bin', applet)).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'EEXIST') throw e;
    });
  }
}

/** The shared libraries `ldd` names for `binary`, and its loader: absolute paths. */
export async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await run('ldd', [binary]);
  return stdout.split('\n').flatMap((line) => {
    const m = /(?:=>\s*)?(\/\S+)\s+\(0x/.exec(line);
    return m ? [m[1]!] : [];
  });
}

async function buildBusybox(store: ImageStore, sources: BuiltinSources, inputs: string): Promise<void> {
  const staging = await store.stage();
  try {
    const rootfs = join(staging, 'rootfs');
    await baseLayout(rootfs, sources.busybox);
    await linkApplets(rootfs, sources.busybox);
    await mkdir(join(rootfs, 'www'));
    await writeFile(join(rootfs, 'www/index.html'), 'busybox ok\n');
    await store.commit(staging, 'busybox', `builtin:busybox ${inputs}`, BUSYBOX_CONFIG);
  } catch (e) {
    await store.discard(staging);
    throw e;
  }
}

async function buildNode(store: ImageStore, sources: BuiltinSources, inputs: string): Promise<void> {
  const staging = await store.stage();
  try {
    const rootfs = join(staging, 'rootfs');
    await baseLayout(rootfs, sources.busybox);
    await symlink('busybox', join(rootfs, 'bin/sh'));
    for (const file of [sources.node, ...(await sharedLibraries(sources.node))]) {
      const target = join(rootfs, file === sources.node ? 'usr/bin/node' : file);
      await mkdir(dirname(target), { recursive: true });
      await copyFile(file, target);
    }
    await mkdir(join(rootfs, 'etc/ssl/certs'), { recursive: true });
    await copyFile(sources.caBundle, join(rootfs, 'etc/ssl/certs/ca-certificates.crt'));
    await store.commit(staging, 'node', `builtin:node ${inputs}`, NODE_CONFIG);
  } catch (e) {
    await store.discard(staging);
    throw e;
  }
}

/**
 * Builds `busybox` and `node` unless the store already holds them built from the
 * same binaries; returns the names it (re)built.
 */
export async function ensureBuiltinImages(store: ImageStore, sources: BuiltinSources = DEFAULT_SOURCES): Promise<string[]> {
  const busyboxHash = await sha256File(sources.busybox);
  const nodeHash = await sha256File(sources.node);
  const caHash = await sha256File(sources.caBundle);
  const wanted: Array<[string, string, (inputs: string) => Promise<void>]> = [
    ['busybox', `busybox=${busyboxHash}`, (inputs) => buildBusybox(store, sources, inputs)],
    ['node', `node=${nodeHash} busybox=${busyboxHash} ca=${caHash}`, (inputs) => buildNode(store, sources, inputs)],
  ];
  const current = new Map((await store.list()).map((m) => [m.name, m.source]));
  const built: string[] = [];
  for (const [name, inputs, build] of wanted) {
    if (current.get(name) === `builtin:${name} ${inputs}`) continue;
    await build(inputs);
    built.push(name);
  }
  return built;
}
