/**
 * The user a container's process runs as: the image's OCI `User` ("1000",
 * "1000:1000", "www-data", "www-data:web", "1000:web"), resolved as Docker does —
 * names through the image's own /etc/passwd and /etc/group, a name's primary group
 * from /etc/passwd, supplementary groups from the groups that list the user.
 *
 * Ids are container ids: they must fall inside the tenant's mapped range
 * (0..IDS_PER_TENANT-1), or the process would have no host identity at all.
 */
import { constants } from 'node:fs';
import { lstat, open } from 'node:fs/promises';
import { join } from 'node:path';
import { StrataError } from '../../core/errors.js';
import { validationError } from '../../core/validation.js';
import { IDS_PER_TENANT } from './options.js';

export interface ProcessUser {
  uid: number;
  gid: number;
  additionalGids?: number[];
}

interface PasswdEntry { name: string; uid: number; gid: number }
interface GroupEntry { name: string; gid: number; members: string[] }

const NUMERIC = /^\d+$/;

export function parsePasswd(text: string): PasswdEntry[] {
  return text.split('\n').flatMap((line) => {
    const f = line.split(':');
    return f.length >= 4 && f[0] && NUMERIC.test(f[2]!) && NUMERIC.test(f[3]!) ? [{ name: f[0], uid: Number(f[2]), gid: Number(f[3]) }] : [];
  });
}

export function parseGroup(text: string): GroupEntry[] {
  return text.split('\n').flatMap((line) => {
    const f = line.split(':');
    return f.length >= 3 && f[0] && NUMERIC.test(f[2]!) ? [{ name: f[0], gid: Number(f[2]), members: (f[3] ?? '').split(',').filter(Boolean) }] : [];
  });
}

const invalid = (message: string): StrataError => validationError('user', message);

/** Resolves `user` against the image's passwd and group files (their text; empty when the image has none). */
export function resolveUser(user: string, passwdText: string, groupText: string): ProcessUser {
  const spec = user.trim();
  if (spec === '') return { uid: 0, gid: 0 };
  const [userPart, groupPart, ...rest] = spec.split(':');
  if (rest.length > 0 || !userPart) throw invalid(`user '${user}' is not "user", "uid", "user:group" or "uid:gid"`);
  const passwd = parsePasswd(passwdText);
  const groups = parseGroup(groupText);

  const entry = NUMERIC.test(userPart) ? passwd.find((p) => p.uid === Number(userPart)) : passwd.find((p) => p.name === userPart);
  if (!entry && !NUMERIC.test(userPart)) throw invalid(`user '${userPart}' is not in the image's /etc/passwd`);
  const uid = entry?.uid ?? Number(userPart);

  let gid: number;
  if (groupPart === undefined) {
    gid = entry?.gid ?? 0;
  } else if (NUMERIC.test(groupPart)) {
    gid = Number(groupPart);
  } else {
    const group = groups.find((g) => g.name === groupPart);
    if (!group) throw invalid(`group '${groupPart}' is not in the image's /etc/group`);
    gid = group.gid;
  }
  for (const [what, id] of [['uid', uid], ['gid', gid]] as const) {
    if (!Number.isSafeInteger(id) || id >= IDS_PER_TENANT) throw invalid(`${what} ${id} is outside the ids a container has (0..${IDS_PER_TENANT - 1})`);
  }
  // Supplementary groups only with a named user and no explicit group, as Docker does.
  const additionalGids = entry && groupPart === undefined
    ? [...new Set(groups.filter((g) => g.members.includes(entry.name) && g.gid !== gid && g.gid < IDS_PER_TENANT).map((g) => g.gid))]
    : [];
  return additionalGids.length > 0 ? { uid, gid, additionalGids } : { uid, gid };
}

/**
 * `runc exec` flags that run a process as `user`. Without them runc runs it as
 * the container's own process user (its config.json), which is the default.
 */
export function execUserArgs(user: ProcessUser): string[] {
  return ['--user', `${user.uid}:${user.gid}`, ...(user.additionalGids ?? []).flatMap((g) => ['--additional-gids', String(g)])];
}

/** Resolves `user` against the files of the image rooted at `rootfs`. */
export async function resolveImageUser(user: string, rootfs: string): Promise<ProcessUser> {
  return resolveUser(user, await readInside(rootfs, 'passwd'), await readInside(rootfs, 'group'));
}

/**
 * `<rootfs>/etc/<name>` as text, '' when missing. Never through a symlink: an
 * image's /etc/passwd pointing at the host's would otherwise be read on the host.
 */
async function readInside(rootfs: string, name: string): Promise<string> {
  const etc = await lstat(join(rootfs, 'etc')).catch(() => null);
  if (!etc?.isDirectory()) return '';
  const file = await open(join(rootfs, 'etc', name), constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => null);
  if (!file) return '';
  try {
    if (!(await file.stat()).isFile()) return '';
    return await file.readFile('utf8');
  } finally {
    await file.close();
  }
}
