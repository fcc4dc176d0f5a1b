/**
 * `strata image import FILE`: an OCI image — a layout directory (`oci-layout`,
 * `index.json`, `blobs/sha256/…`) or a tarball of one, gzipped or not — into
 * the image store.
 *
 * Every blob read (index, manifest, config, layer) is checked against its sha256
 * digest and size before it is used. Layers are applied in order onto an empty
 * staging root, whiteouts first (`.wh.NAME` deletes NAME from the layers below,
 * `.wh..wh..opq` empties its directory of them), then the layer's own entries,
 * all kept inside the root (see `tar.ts`). The run config comes from the image
 * config (Entrypoint + Cmd, Env, WorkingDir, the first exposed TCP port); a
 * working directory that is not a clean absolute path outside /proc is refused
 * (the CVE-2024-21626 vector). Nothing reaches the store unless all of it checks.
 */
import { createHash } from 'node:crypto';
import { lstat, mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { StrataError } from '../../core/errors.js';
import { imageRunConfigSchema, type ImageManifest, type ImageRunConfig, type ImageStore } from './images.js';
import { extractInto, readTar, resolveInRoot, type TarEntry } from './tar.js';

interface Descriptor {
  mediaType?: string;
  digest: string;
  size: number;
  platform?: { architecture?: string; os?: string };
}

interface OciIndex {
  manifests: Descriptor[];
}

interface OciManifest {
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
}

interface OciImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    Env?: string[] | null;
    WorkingDir?: string;
    ExposedPorts?: Record<string, unknown>;
    User?: string;
  };
}

export interface ImportProgress {
  /** Layers applied so far, of `layers`. */
  layer: number;
  layers: number;
  /** Bytes of layer blobs verified so far, of `bytes`. */
  doneBytes: number;
  bytes: number;
}

export interface ImportResult {
  manifest: ImageManifest;
  /** Entries the import left out (device nodes, FIFOs), by layer. */
  skipped: string[];
}

const INDEX_TYPES = new Set(['application/vnd.oci.image.index.v1+json', 'application/vnd.docker.distribution.manifest.list.v2+json']);
const GZIP_LAYERS = new Set([
  'application/vnd.oci.image.layer.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.diff.tar.gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
]);
const PLAIN_LAYERS = new Set(['application/vnd.oci.image.layer.v1.tar', 'application/vnd.oci.image.layer.nondistributable.v1.tar']);
const HOST_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64' };

const invalid = (message: string, details: Record<string, unknown> = {}): StrataError =>
  new StrataError('STRATA_ERR_VALIDATION', `cannot import image: ${message}`, details);

/** Imports the image at `source` (layout dir or tarball) as `name`; replaces an image of that name. */
export async function importOciImage(store: ImageStore, source: string, name: string, onProgress?: (p: ImportProgress) => void): Promise<ImportResult> {
  const info = await lstat(source).catch(() => null);
  if (!info) throw new StrataError('STRATA_ERR_NOT_FOUND', `no such file: ${source}`, { kind: 'file', name: source });
  if (info.isDirectory()) return importLayout(store, source, source, name, onProgress);
  const unpacked = await mkdtemp(join(tmpdir(), 'strata-oci-'));
  try {
    let archive = await readFile(source);
    if (archive[0] === 0x1f && archive[1] === 0x8b) archive = gunzipSync(archive);
    await extractInto(unpacked, readTar(archive));
    return await importLayout(store, unpacked, source, name, onProgress);
  } finally {
    await rm(unpacked, { recursive: true, force: true });
  }
}

async function importLayout(store: ImageStore, layout: string, source: string, name: string, onProgress?: (p: ImportProgress) => void): Promise<ImportResult> {
  const layoutFile = await readFile(join(layout, 'oci-layout'), 'utf8').catch(() => null);
  if (layoutFile === null || JSON.parse(layoutFile).imageLayoutVersion === undefined) throw invalid(`${source} is not an OCI image layout (no oci-layout file)`);
  const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as OciIndex;
  const manifestDescriptor = await pickManifest(layout, index);
  const manifest = parseBlob<OciManifest>(await readBlob(layout, manifestDescriptor));
  const imageConfig = parseBlob<OciImageConfig>(await readBlob(layout, manifest.config));
  const runConfig = runConfigOf(imageConfig);

  const staging = await store.stage();
  try {
    const rootfs = join(staging, 'rootfs');
    const skipped: string[] = [];
    const bytes = manifest.layers.reduce((n, l) => n + l.size, 0);
    let doneBytes = 0;
    for (const [i, layer] of manifest.layers.entries()) {
      const blob = await readBlob(layout, layer);
      const mediaType = layer.mediaType ?? 'application/vnd.oci.image.layer.v1.tar';
      const isGzip = GZIP_LAYERS.has(mediaType) || (blob[0] === 0x1f && blob[1] === 0x8b && !PLAIN_LAYERS.has(mediaType));
      if (!isGzip && !PLAIN_LAYERS.has(mediaType)) throw invalid(`layer ${layer.digest} has unsupported media type ${mediaType}`, { digest: layer.digest });
      const entries = readTar(isGzip ? gunzipSync(blob) : blob);
      await applyLayer(rootfs, entries, skipped);
      doneBytes += layer.size;
      onProgress?.({ layer: i + 1, layers: manifest.layers.length, doneBytes, bytes });
    }
    const committed = await store.commit(staging, name, `oci:${manifestDescriptor.digest}`, runConfig);
    return { manifest: committed, skipped };
  } catch (e) {
    await store.discard(staging);
    throw e;
  }
}

/** Whiteouts first (they act on the layers below), then the layer's own entries. */
async function applyLayer(rootfs: string, entries: readonly TarEntry[], skipped: string[]): Promise<void> {
  const whiteouts = entries.filter((e) => basename(e.path).startsWith('.wh.'));
  for (const whiteout of whiteouts) {
    const base = basename(whiteout.path);
    // Resolving the whiteout's own path resolves its directory (symlinks inside the root) and leaves the name alone.
    const hostPath = await resolveInRoot(rootfs, whiteout.path);
    const hostDir = hostPath.slice(0, hostPath.lastIndexOf('/'));
    if (base === '.wh..wh..opq') {
      for (const child of await readdir(hostDir).catch(() => [])) await rm(join(hostDir, child), { recursive: true, force: true });
    } else {
      await rm(join(hostDir, base.slice('.wh.'.length)), { recursive: true, force: true });
    }
  }
  const report = await extractInto(rootfs, entries.filter((e) => !basename(e.path).startsWith('.wh.')));
  skipped.push(...report.skipped);
}

const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

async function pickManifest(layout: string, index: OciIndex): Promise<Descriptor> {
  const arch = HOST_ARCH[process.arch] ?? process.arch;
  let candidates = index.manifests ?? [];
  for (let depth = 0; depth < 4; depth++) {
    const chosen = candidates.find((d) => !d.platform || (d.platform.architecture === arch && (d.platform.os ?? 'linux') === 'linux'));
    if (!chosen) throw invalid(`the image has no manifest for linux/${arch}`);
    if (!INDEX_TYPES.has(chosen.mediaType ?? '')) return chosen;
    candidates = parseBlob<OciIndex>(await readBlob(layout, chosen)).manifests ?? [];
  }
  throw invalid('image indexes nest too deep');
}

/** The blob a descriptor names, after checking its size and sha256. */
async function readBlob(layout: string, descriptor: Descriptor): Promise<Buffer> {
  const match = /^sha256:([0-9a-f]{64})$/.exec(descriptor.digest ?? '');
  if (!match) throw invalid(`unsupported digest '${descriptor.digest}' (sha256 only)`, { digest: descriptor.digest });
  const blob = await readFile(join(layout, 'blobs', 'sha256', match[1]!)).catch(() => null);
  if (!blob) throw invalid(`blob ${descriptor.digest} is missing`, { digest: descriptor.digest });
  if (blob.length !== descriptor.size) throw invalid(`blob ${descriptor.digest} has ${blob.length} bytes, the descriptor says ${descriptor.size}`, { digest: descriptor.digest });
  const actual = createHash('sha256').update(blob).digest('hex');
  if (actual !== match[1]) throw invalid(`blob ${descriptor.digest} does not match its digest (got sha256:${actual})`, { digest: descriptor.digest });
  return blob;
}

function parseBlob<T>(blob: Buffer): T {
  try {
    return JSON.parse(blob.toString('utf8')) as T;
  } catch {
    throw invalid('a manifest or config blob is not JSON');
  }
}

/** How the image runs: Entrypoint + Cmd, its Env, WorkingDir and User, and the first exposed TCP port. */
export function runConfigOf(image: OciImageConfig): ImageRunConfig {
  const c = image.config ?? {};
  const args = [...(c.Entrypoint ?? []), ...(c.Cmd ?? [])];
  if (args.length === 0) throw invalid('the image config has neither Entrypoint nor Cmd');
  const cwd = c.WorkingDir || '/';
  if (!cwd.startsWith('/') || cwd.split('/').includes('..') || cwd === '/proc' || cwd.startsWith('/proc/')) {
    throw invalid(`working directory '${cwd}' must be a clean absolute path outside /proc`, { field: 'WorkingDir' });
  }
  const port = Object.keys(c.ExposedPorts ?? {}).map((p) => /^(\d+)(\/tcp)?$/.exec(p)).find((m) => m !== null);
  const user = c.User?.trim();
  const parsed = imageRunConfigSchema.safeParse({ args, env: c.Env ?? [], cwd, ...(port ? { port: Number(port[1]) } : {}), ...(user ? { user } : {}) });
  if (!parsed.success) throw invalid(`the image config is unusable: ${parsed.error.issues[0]!.message}`, { field: parsed.error.issues[0]!.path.join('.') });
  return parsed.data;
}
