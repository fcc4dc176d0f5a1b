/** Small OCI images for tests: a minimal tar writer and an OCI layout writer. */
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export interface TarInput {
  path: string;
  type?: 'file' | 'dir' | 'symlink';
  content?: string | Buffer;
  linkname?: string;
  mode?: number;
}

/** A minimal ustar writer: enough for test layers (paths under 100 bytes). */
export function tar(entries: readonly TarInput[]): Buffer {
  const blocks: Buffer[] = [];
  for (const e of entries) {
    const type = e.type ?? 'file';
    const data = type === 'file' ? Buffer.from(e.content ?? '') : Buffer.alloc(0);
    const header = Buffer.alloc(512);
    header.write(e.path + (type === 'dir' && !e.path.endsWith('/') ? '/' : ''), 0, 100, 'utf8');
    header.write(`${(e.mode ?? (type === 'dir' ? 0o755 : 0o644)).toString(8).padStart(7, '0')}\0`, 100);
    header.write('0000000\0', 108);
    header.write('0000000\0', 116);
    header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
    header.write(`${(1_700_000_000).toString(8).padStart(11, '0')}\0`, 136);
    header.write(type === 'file' ? '0' : type === 'dir' ? '5' : '2', 156);
    if (e.linkname) header.write(e.linkname, 157, 100, 'utf8');
    header.write('ustar\0', 257);
    header.write('00', 263);
    header.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of header) sum += b;
    header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    blocks.push(header, data, Buffer.alloc((512 - (data.length % 512)) % 512));
  }
  blocks.push(Buffer.alloc(1024));
  return Buffer.concat(blocks);
}

export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Writes an OCI layout with the given layers and config; returns its directory. */
export async function writeLayout(dir: string, layers: Array<{ blob: Buffer; gzip: boolean }>, config: Record<string, unknown>): Promise<void> {
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = async (blob: Buffer, mediaType: string): Promise<{ mediaType: string; digest: string; size: number }> => {
    await writeFile(join(dir, 'blobs', 'sha256', sha(blob)), blob);
    return { mediaType, digest: `sha256:${sha(blob)}`, size: blob.length };
  };
  const configBlob = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', config, rootfs: { type: 'layers', diff_ids: [] } }));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: await put(configBlob, 'application/vnd.oci.image.config.v1+json'),
    layers: await Promise.all(layers.map((l) => put(l.blob, l.gzip ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar'))),
  };
  const manifestDescriptor = await put(Buffer.from(JSON.stringify(manifest)), 'application/vnd.oci.image.manifest.v1+json');
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ ...manifestDescriptor, platform: { architecture: 'amd64', os: 'linux' } }] }));
}
