/**
 * `strata cp SRC DST`: files and directories into and out of an instance
 * (`TENANT/NAME:/path`) or a static site's docroot (`site:TENANT/HOSTNAME:/path`),
 * as `docker cp` does: one side is local, the other remote; `-` is a tar
 * stream on stdin or stdout.
 *
 * To the remote side, DST is the path SRC becomes (a directory's contents are
 * merged into it when it exists); with a trailing `/`, DST is a directory SRC
 * goes into under its own name; `DIR/.` copies DIR's contents into DST. From the remote side, SRC lands as DST, or
 * inside DST when that is an existing directory. Modes and symlinks are kept;
 * owners are the destination's. The archive that comes back is unpacked with
 * the same rules the daemon uses (no `..`, nothing written through a symlink).
 */
import { lstat, readdir, readFile, readlink, stat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Command } from 'commander';
import { checkTenantArchive, writeTar, type TarEntry } from '../core/tar.js';
import { relativeParts, writeIntoTree } from '../control/files/tree.js';
import { apiError, clientFor, seg } from './client.js';
import { CliError, done, usageError } from './output.js';

const TAR = 'application/x-tar';

export interface Remote {
  kind: 'instance' | 'site';
  tenant: string;
  name: string;
  path: string;
}

/** `TENANT/NAME:/path` or `site:TENANT/HOSTNAME:/path` → the remote side; anything else is local. */
export function parseRemote(arg: string): Remote | null {
  const site = arg.startsWith('site:');
  const rest = site ? arg.slice(5) : arg;
  if (!/^[a-z0-9][a-z0-9-]*\/[^/]+?:/.test(rest)) {
    if (site) throw usageError(`'${arg}': a site's docroot is site:TENANT/HOSTNAME:/path`);
    return null;
  }
  // A host with a port has a colon of its own: the path starts at the first ":/".
  const slash = rest.indexOf('/');
  const at = rest.indexOf(':/', slash);
  if (at < 0) throw usageError(`'${arg}': the remote path must be absolute, e.g. ${site ? 'site:acme/www.acme.test:/' : 'acme/web:/srv'}`);
  return { kind: site ? 'site' : 'instance', tenant: rest.slice(0, slash), name: rest.slice(slash + 1, at), path: rest.slice(at + 1) };
}

const filesUrl = (r: Remote): string =>
  `/v1/tenants/${seg(r.tenant)}/${r.kind === 'site' ? 'sites' : 'instances'}/${seg(r.name)}/files`;

/** A local file, directory or symlink as tar entries, its top member named `top`. */
async function pack(path: string, top: string): Promise<TarEntry[]> {
  const entries: TarEntry[] = [];
  const visit = async (host: string, rel: string): Promise<void> => {
    const st = await lstat(host);
    const common = { path: rel, mode: st.mode & 0o7777, uid: 0, gid: 0, mtime: Math.floor(st.mtimeMs / 1000), linkname: '', data: Buffer.alloc(0) };
    if (st.isSymbolicLink()) entries.push({ ...common, type: 'symlink', linkname: await readlink(host) });
    else if (st.isFile()) entries.push({ ...common, type: 'file', data: await readFile(host) });
    else if (st.isDirectory()) {
      entries.push({ ...common, type: 'dir' });
      for (const child of (await readdir(host)).sort()) await visit(`${host}/${child}`, `${rel}/${child}`);
    } else throw new CliError(`'${host}' is not a file, directory or symlink: not copied`, 'STRATA_ERR_PATH_ESCAPE');
  };
  await visit(path, top);
  return entries;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

async function upload(cmd: Command, src: string, dst: Remote, json: boolean): Promise<void> {
  let dir: string;
  let archive: Buffer;
  if (src === '-') {
    dir = dst.path;
    archive = await readStdin();
  } else if (/(^|\/)\.$/.test(src)) {
    // `DIR/.`: its contents, merged into DST (as cp -r DIR/. DST and docker cp).
    dir = dst.path;
    const children = (await readdir(src)).sort();
    archive = writeTar((await Promise.all(children.map((c) => pack(`${src}/${c}`, c)))).flat());
  } else {
    const into = dst.path.endsWith('/');
    const top = into ? basename(resolve(src)) : basename(dst.path);
    if (!top) throw usageError(`'${dst.path}': name the destination, or end it with '/' to copy into it`);
    dir = into ? dst.path : dirname(dst.path);
    archive = writeTar(await pack(src, top));
  }
  const c = clientFor(cmd);
  const res = await c.fetch('PUT', filesUrl(dst), { query: { path: dir }, raw: { type: TAR, data: archive } });
  const text = await res.text();
  if (!res.ok) throw apiError(res.status, text);
  const out = JSON.parse(text) as { entries: number; bytes: number; stripped: string[] };
  done(json, `copied ${out.entries} entries (${out.bytes} bytes) to ${dst.tenant}/${dst.name}:${dst.path}${out.stripped.length ? `; setuid/setgid dropped from ${out.stripped.join(', ')}` : ''}`, out);
}

async function download(cmd: Command, src: Remote, dst: string, json: boolean): Promise<void> {
  const c = clientFor(cmd);
  const res = await c.fetch('GET', filesUrl(src), { query: { path: src.path } });
  if (!res.ok) throw apiError(res.status, await res.text());
  const archive = Buffer.from(await res.arrayBuffer());
  if (dst === '-') {
    process.stdout.write(archive);
    return;
  }
  const top = decodeURIComponent(res.headers.get('x-strata-copy-name') ?? '');
  const checked = checkTenantArchive(archive, { links: 'any' });
  const target = resolve(dst);
  const isDir = (await stat(target).catch(() => null))?.isDirectory() ?? false;
  let root: string;
  if (top === '' || isDir) root = target;
  else {
    // The top member becomes DST: renamed on the way in.
    root = dirname(target);
    const name = basename(target);
    for (const e of checked.entries) e.path = e.path === top ? name : `${name}${e.path.slice(top.length)}`;
  }
  await writeIntoTree(root, relativeParts(''), checked);
  done(json, `copied ${checked.entries.length} entries (${checked.bytes} bytes) to ${dst}`, { entries: checked.entries.length, bytes: checked.bytes });
}

export function registerCp(program: Command): void {
  program.command('cp').argument('<src>').argument('<dst>')
    .description("copy files and directories into or out of an instance (TENANT/NAME:/path) or a static site's docroot (site:TENANT/HOSTNAME:/path); - is a tar stream")
    .action(async (src: string, dst: string, _o: unknown, cmd: Command) => {
      const json = Boolean(cmd.optsWithGlobals().json);
      const from = src === '-' ? null : parseRemote(src);
      const to = dst === '-' ? null : parseRemote(dst);
      if (from && to) throw usageError('one side of a copy is local: copy out, then in');
      if (!from && !to) throw usageError('one side of a copy is remote: TENANT/NAME:/path or site:TENANT/HOSTNAME:/path');
      if (to) await upload(cmd, src, to, json);
      else await download(cmd, from!, dst, json);
    });
}
