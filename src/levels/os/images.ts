/**
 * The image store of the `os` level: one directory per image,
 *
 *     <imagesDir>/<name>/rootfs          the root filesystem, owned by host ids 0..65535
 *     <imagesDir>/<name>/manifest.json   what it is, how to run it, sha256 of every file
 *
 * Images are written whole into a staging directory beside the store and renamed
 * into place, so an instance never sees half an image. The manifest's `digest`
 * (over the file list and the run config) names one exact content, which is what
 * instances' shifted copies are keyed on.
 */
import { createHash, randomUUID } from 'node:crypto';
import { lstat, mkdir, readdir, readlink, rename, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { z } from 'zod';
import { StrataError, notFound } from '../../core/errors.js';
import { sha256File } from '../../core/hash.js';
import type { ImageInfo } from '../driver.js';
import { readJson, writeJsonAtomic } from './state-file.js';

export const IMAGE_NAME = /^[a-z0-9][a-z0-9._-]{0,63}$/;

/** How an image runs when the instance's config says nothing. */
export const imageRunConfigSchema = z.object({
  args: z.array(z.string()).min(1),
  env: z.array(z.string()).default([]),
  cwd: z.string().startsWith('/').default('/'),
  /** The TCP port its service listens on, if it has one. */
  port: z.number().int().min(1).max(65_535).optional(),
  /** The OCI `User` its process runs as ("1000:1000", "www-data" …; resolved at create, see image-user.ts); default root. */
  user: z.string().max(256).optional(),
}).strict();
export type ImageRunConfig = z.output<typeof imageRunConfigSchema>;

export interface ImageManifest {
  name: string;
  /** `builtin:busybox`, `oci:sha256:…` … */
  source: string;
  createdAt: string;
  config: ImageRunConfig;
  /** sha256 (hex) of every regular file, by path relative to the rootfs; symlinks as `-> target`. */
  files: Record<string, string>;
  /** sha256 over `files` and `config`: the identity of the content. */
  digest: string;
}

export interface ResolvedImage {
  name: string;
  rootfs: string;
  manifest: ImageManifest;
}

export class ImageStore {
  /** Image sizes by digest: an image's content never changes under its digest. */
  readonly #sizes = new Map<string, number>();

  constructor(readonly dir: string) {}

  /** Every image (built-in and imported) as the API lists it, by name. */
  async infos(): Promise<ImageInfo[]> {
    const manifests = await this.list();
    return Promise.all(manifests.sort((a, b) => a.name.localeCompare(b.name)).map((m) => this.info(m)));
  }

  async info(m: ImageManifest): Promise<ImageInfo> {
    let size = this.#sizes.get(m.digest);
    if (size === undefined) {
      size = await treeSize(join(this.dir, m.name, 'rootfs')).catch(() => 0);
      this.#sizes.set(m.digest, size);
    }
    return { name: m.name, level: 'os', source: m.source, builtin: m.source.startsWith('builtin:'), digest: m.digest, sizeBytes: size, createdAt: m.createdAt };
  }

  /** The image called `name`; STRATA_ERR_NOT_FOUND if the store has none. */
  async resolve(name: string): Promise<ResolvedImage> {
    if (!IMAGE_NAME.test(name)) throw new StrataError('STRATA_ERR_VALIDATION', `'${name}' is not a valid image name`, { image: name });
    const manifest = await readJson<ImageManifest>(join(this.dir, name, 'manifest.json'));
    if (!manifest) throw notFound('image', name);
    return { name, rootfs: join(this.dir, name, 'rootfs'), manifest };
  }

  async list(): Promise<ImageManifest[]> {
    let names: string[];
    try {
      names = await readdir(this.dir);
    } catch {
      return [];
    }
    const manifests = await Promise.all(names.filter((n) => IMAGE_NAME.test(n)).map((n) => readJson<ImageManifest>(join(this.dir, n, 'manifest.json'))));
    return manifests.filter((m): m is ImageManifest => m !== null);
  }

  /**
   * A fresh staging directory with an empty `rootfs/` to build an image in; pass it
   * to `commit`, or to `discard` if the build fails.
   */
  async stage(): Promise<string> {
    const staging = join(this.dir, `.staging-${randomUUID().slice(0, 8)}`);
    await mkdir(join(staging, 'rootfs'), { recursive: true, mode: 0o755 });
    return staging;
  }

  async discard(staging: string): Promise<void> {
    await rm(staging, { recursive: true, force: true });
  }

  /** Hashes the staged rootfs, writes its manifest and puts it in place of any image called `name`. */
  async commit(staging: string, name: string, source: string, config: ImageRunConfig): Promise<ImageManifest> {
    if (!IMAGE_NAME.test(name)) throw new StrataError('STRATA_ERR_VALIDATION', `'${name}' is not a valid image name`, { image: name });
    const files = await hashTree(join(staging, 'rootfs'));
    const digest = createHash('sha256').update(JSON.stringify({ files, config })).digest('hex');
    const manifest: ImageManifest = { name, source, createdAt: new Date().toISOString(), config, files, digest };
    await writeJsonAtomic(join(staging, 'manifest.json'), manifest);
    const target = join(this.dir, name);
    const old = join(this.dir, `.old-${name}-${randomUUID().slice(0, 8)}`);
    await rename(target, old).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== 'ENOENT') throw e;
    });
    await rename(staging, target);
    await rm(old, { recursive: true, force: true });
    return manifest;
  }

  async remove(name: string): Promise<void> {
    if (!IMAGE_NAME.test(name)) return;
    await rm(join(this.dir, name), { recursive: true, force: true });
  }
}

/** sha256 of every regular file under `root` and the target of every symlink, by relative path, sorted. */
export async function hashTree(root: string): Promise<Record<string, string>> {
  const out: Array<[string, string]> = [];
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      const rel = relative(root, path);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isSymbolicLink()) out.push([rel, `-> ${await readlink(path)}`]);
      else if (entry.isFile()) out.push([rel, await sha256File(path)]);
    }
  };
  await walk(root);
  out.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Object.fromEntries(out);
}

/** Bytes of the regular files under `root` (hard links once), not following links. */
export async function treeSize(root: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const st = await lstat(path);
        const key = `${st.dev}:${st.ino}`;
        if (!seen.has(key)) total += st.size;
        seen.add(key);
      }
    }
  };
  await walk(root);
  return total;
}

/** True when `path` exists (without following a final symlink). */
export async function exists(path: string): Promise<boolean> {
  try {
    await lstat(path);
    return true;
  } catch {
    return false;
  }
}
