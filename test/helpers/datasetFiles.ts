// Builders for dataset uploads in tests: a hand-written zip writer (so entry names, types and
// declared sizes can be crafted), tar / tar.gz via tar-stream, .npy/.npz, IDX, images via sharp.
import zlib, { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import tarStream from 'tar-stream';

export interface ZipEntrySpec {
  name: string;
  data?: Buffer;
  /** Directory entry (name should end with "/"). */
  dir?: boolean;
  /** Unix symlink entry; data is the link target. */
  symlink?: boolean;
  /** Default deflate. */
  method?: 'store' | 'deflate';
  /** Lie about the uncompressed size in both headers (zip-bomb test). */
  declaredSize?: number;
}

/** A zip archive (no zip64, no data descriptors). */
export function zipFile(entries: ZipEntrySpec[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name, 'utf8');
    const data = e.data ?? Buffer.alloc(0);
    const method = e.dir || e.method === 'store' ? 0 : 8;
    const body = method === 8 ? zlib.deflateRawSync(data) : data;
    const crc = zlib.crc32(data);
    const size = e.declaredSize ?? data.length;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x0800, 6); // UTF-8 names
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, body);

    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by unix
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(0x0800, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(body.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    const mode = e.symlink ? 0o120777 : e.dir ? 0o040755 : 0o100644;
    central.writeUInt32LE((mode * 0x10000 + (e.dir ? 0x10 : 0)) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(cd.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, cd, end]);
}

export interface TarEntrySpec {
  name: string;
  data?: Buffer;
  type?: 'file' | 'directory' | 'symlink' | 'link';
  linkname?: string;
}

export async function tarFile(entries: TarEntrySpec[], gzip = false): Promise<Buffer> {
  const pack = tarStream.pack();
  const chunks: Buffer[] = [];
  const done = (async () => {
    for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  })();
  for (const e of entries) {
    const type = e.type ?? 'file';
    await new Promise<void>((resolve, reject) => {
      const header = { name: e.name, type, linkname: e.linkname, mode: type === 'directory' ? 0o755 : 0o644 };
      if (type === 'file')
        pack.entry(header, e.data ?? Buffer.alloc(0), (err) => (err ? reject(err) : resolve()));
      else pack.entry(header, (err) => (err ? reject(err) : resolve()));
    });
  }
  pack.finalize();
  await done;
  const tar = Buffer.concat(chunks);
  return gzip ? gzipSync(tar) : tar;
}

/** A .npy file (version 1.0). */
export function npy(descr: string, shape: number[], data: Buffer, opts: { fortran?: boolean } = {}): Buffer {
  const dict = `{'descr': '${descr}', 'fortran_order': ${opts.fortran ? 'True' : 'False'}, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const unpadded = 10 + dict.length + 1;
  const pad = (64 - (unpadded % 64)) % 64;
  const header = `${dict}${' '.repeat(pad)}\n`;
  const pre = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(pre);
  pre.writeUInt16LE(header.length, 8);
  return Buffer.concat([pre, Buffer.from(header, 'latin1'), data]);
}

export function npz(arrays: Record<string, Buffer>, method: 'store' | 'deflate' = 'deflate'): Buffer {
  return zipFile(Object.entries(arrays).map(([k, v]) => ({ name: `${k}.npy`, data: v, method })));
}

export function idxImages(
  count: number,
  height: number,
  width: number,
  pixels: Buffer,
  magic = 0x00000803,
): Buffer {
  const head = Buffer.alloc(16);
  head.writeUInt32BE(magic, 0);
  head.writeUInt32BE(count, 4);
  head.writeUInt32BE(height, 8);
  head.writeUInt32BE(width, 12);
  return Buffer.concat([head, pixels]);
}

export function idxLabels(labels: ArrayLike<number>, magic = 0x00000801): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(magic, 0);
  head.writeUInt32BE(labels.length, 4);
  return Buffer.concat([head, Buffer.from(Array.from(labels))]);
}

/** A small image in the given format from raw pixels (channels 1 -> a real greyscale file). */
export async function encodeImage(
  raw: Buffer,
  width: number,
  height: number,
  channels: 1 | 3 | 4,
  format: 'png' | 'jpeg' | 'webp',
): Promise<Buffer> {
  let img = sharp(raw, { raw: { width, height, channels } });
  if (channels === 1) img = img.toColourspace('b-w');
  if (format === 'png') return img.png().toBuffer();
  if (format === 'jpeg') return img.jpeg({ quality: 95 }).toBuffer();
  return img.webp({ lossless: true }).toBuffer();
}

/** A valid-looking PNG whose header claims width x height pixels (the data is tiny). */
export function pngHeaderOnly(width: number, height: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(zlib.crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // greyscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', zlib.deflateSync(Buffer.alloc(1024))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
