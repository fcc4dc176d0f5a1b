/** The image's `User`, resolved as Docker does: numeric ids, names through the image's passwd and group files. */
import assert from 'node:assert/strict';
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import { isStrataError } from '../../../src/core/errors.js';
import { resolveImageUser, resolveUser } from '../../../src/levels/os/image-user.js';
import { tempDir } from '../../support/temp.js';

const PASSWD = 'root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001:web:/home/web:/bin/sh\nnobody:x:65534:65534::/:/bin/false\nbroken-line\n';
const GROUP = 'root:x:0:\nwebgrp:x:1001:\nstaff:x:50:web,other\nlogs:x:4:web\nnogroup:x:65534:\n';

const invalid = (f: () => unknown, pattern: RegExp): void =>
  assert.throws(f, (e: unknown) => isStrataError(e) && e.code === 'STRATA_ERR_VALIDATION' && pattern.test(e.message));

test('numeric users and groups need no passwd entry', () => {
  assert.deepEqual(resolveUser('1234:5678', '', ''), { uid: 1234, gid: 5678 });
  assert.deepEqual(resolveUser('1234', '', ''), { uid: 1234, gid: 0 });
  assert.deepEqual(resolveUser('', PASSWD, GROUP), { uid: 0, gid: 0 });
});

test('a name gets its uid, primary group and supplementary groups from the image', () => {
  assert.deepEqual(resolveUser('web', PASSWD, GROUP), { uid: 1000, gid: 1001, additionalGids: [50, 4] });
  // A numeric uid that has an entry gets its primary group too.
  assert.deepEqual(resolveUser('1000', PASSWD, GROUP), { uid: 1000, gid: 1001, additionalGids: [50, 4] });
  // An explicit group replaces the primary and drops the supplementary ones.
  assert.deepEqual(resolveUser('web:staff', PASSWD, GROUP), { uid: 1000, gid: 50 });
  assert.deepEqual(resolveUser('nobody', PASSWD, GROUP), { uid: 65534, gid: 65534 });
});

test('unknown names, ids outside the container range and malformed values are refused', () => {
  invalid(() => resolveUser('ghost', PASSWD, GROUP), /not in the image's \/etc\/passwd/);
  invalid(() => resolveUser('web:ghosts', PASSWD, GROUP), /not in the image's \/etc\/group/);
  invalid(() => resolveUser('70000', PASSWD, GROUP), /outside the ids/);
  invalid(() => resolveUser('1:70000', PASSWD, GROUP), /outside the ids/);
  invalid(() => resolveUser('a:b:c', PASSWD, GROUP), /is not/);
});

test("an image's /etc/passwd that is a symlink (to the host's) is not followed", async () => {
  const root = tempDir('user');
  await mkdir(join(root, 'etc'));
  // The host's /etc/passwd has root; through the link it would resolve.
  await symlink('/etc/passwd', join(root, 'etc', 'passwd'));
  await assert.rejects(resolveImageUser('root', root), (e: unknown) => isStrataError(e) && /not in the image/.test(e.message));
  await writeFile(join(root, 'etc', 'group'), GROUP);
  await rm(join(root, 'etc', 'passwd'));
  await writeFile(join(root, 'etc', 'passwd'), PASSWD);
  assert.deepEqual(await resolveImageUser('web', root), { uid: 1000, gid: 1001, additionalGids: [50, 4] });
});
