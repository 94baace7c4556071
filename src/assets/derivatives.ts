import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import sharp from 'sharp';

/** Longest side of a thumbnail or poster, px. */
export const THUMBNAIL_PX = 384;

const run = promisify(execFile);

/** PNG chunks that carry text or EXIF: ComfyUI writes its `prompt` and `workflow` JSON into tEXt. */
const PNG_METADATA_CHUNKS = new Set(['tEXt', 'zTXt', 'iTXt', 'eXIf', 'tIME']);
/** WebP RIFF chunks with metadata: ComfyUI's animated WebP carries the workflow in EXIF. */
const WEBP_METADATA_CHUNKS = new Set(['EXIF', 'XMP ']);
const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** A PNG without its text and EXIF chunks; pixels untouched, byte for byte. */
export function stripPng(data: Buffer): Buffer {
  if (data.length < 8 || !data.subarray(0, 8).equals(PNG_SIGNATURE)) throw new Error('not a PNG');
  const kept: Buffer[] = [PNG_SIGNATURE];
  let offset = 8;
  while (offset + 12 <= data.length) {
    const length = data.readUInt32BE(offset);
    const type = data.toString('latin1', offset + 4, offset + 8);
    const end = offset + 12 + length;
    if (end > data.length) throw new Error('truncated PNG');
    if (!PNG_METADATA_CHUNKS.has(type)) kept.push(data.subarray(offset, end));
    offset = end;
    if (type === 'IEND') break;
  }
  return Buffer.concat(kept);
}

/** A WebP without EXIF and XMP chunks (their flags cleared in VP8X); frames untouched. */
export function stripWebp(data: Buffer): Buffer {
  if (data.length < 12 || data.toString('latin1', 0, 4) !== 'RIFF' || data.toString('latin1', 8, 12) !== 'WEBP') throw new Error('not a WebP');
  const kept: Buffer[] = [];
  let offset = 12;
  while (offset + 8 <= data.length) {
    const type = data.toString('latin1', offset, offset + 4);
    const size = data.readUInt32LE(offset + 4);
    const end = offset + 8 + size + (size % 2);
    if (offset + 8 + size > data.length) throw new Error('truncated WebP');
    if (type === 'VP8X') {
      const chunk = Buffer.from(data.subarray(offset, Math.min(end, data.length)));
      chunk[8] = chunk[8]! & ~(0x08 | 0x04); // EXIF and XMP present flags
      kept.push(chunk);
    } else if (!WEBP_METADATA_CHUNKS.has(type)) {
      kept.push(data.subarray(offset, Math.min(end, data.length)));
    }
    offset = end;
  }
  const body = Buffer.concat(kept);
  const header = Buffer.alloc(12);
  header.write('RIFF', 0, 'latin1');
  header.writeUInt32LE(body.length + 4, 4);
  header.write('WEBP', 8, 'latin1');
  return Buffer.concat([header, body]);
}

/**
 * The image as published: without the metadata a renderer embedded (prompt, workflow, model
 * names, camera EXIF). PNG and WebP lose only those chunks; JPEG is re-encoded by sharp, which
 * keeps no metadata; other types are returned as they are.
 */
export async function stripMetadata(data: Buffer, contentType: string): Promise<Buffer> {
  switch (contentType) {
    case 'image/png':
      return stripPng(data);
    case 'image/webp':
      return stripWebp(data);
    case 'image/jpeg':
      return sharp(data).rotate().jpeg({ quality: 92, mozjpeg: true }).toBuffer();
    default:
      return data;
  }
}

/** A 384 px WebP of an image, or of the first frame of an animated one. */
export function imageThumbnail(data: Buffer): Promise<Buffer> {
  return sharp(data, { pages: 1 })
    .resize(THUMBNAIL_PX, THUMBNAIL_PX, { fit: 'inside', withoutEnlargement: true })
    .webp({ quality: 75 })
    .toBuffer();
}

/** The first frame of a video, by ffmpeg when the machine has it; null otherwise. */
async function ffmpegFrame(data: Buffer): Promise<Buffer | null> {
  const dir = tmpdir();
  const input = path.join(dir, `celforge-poster-${randomUUID()}`);
  const output = `${input}.png`;
  try {
    await writeFile(input, data, { mode: 0o600 });
    await run('ffmpeg', ['-v', 'error', '-nostdin', '-y', '-i', input, '-frames:v', '1', output], { timeout: 30_000 });
    return await sharp(output).toBuffer();
  } catch {
    return null;
  } finally {
    await rm(input, { force: true });
    await rm(output, { force: true });
  }
}

/** A plain poster for a video no frame could be taken from (no ffmpeg on this machine). */
function placeholderPoster(): Promise<Buffer> {
  return sharp({ create: { width: THUMBNAIL_PX, height: 216, channels: 3, background: '#1c1b26' } }).webp({ quality: 75 }).toBuffer();
}

/**
 * The thumbnail of an image, or the poster of a video: an animated WebP's first frame through
 * sharp, an MP4/WebM's first frame through ffmpeg, else a plain placeholder.
 */
export async function makeThumbnail(data: Buffer | null, contentType: string): Promise<Buffer> {
  if (data && contentType.startsWith('image/')) return imageThumbnail(data);
  const frame = data ? await ffmpegFrame(data) : null;
  return frame ? imageThumbnail(frame) : placeholderPoster();
}
