import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { rm } from 'node:fs/promises';
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

/** GIF application extensions that only say how the animation loops; any other one (XMP, ICC, a tool's data) goes. */
const GIF_LOOPING = new Set(['NETSCAPE2.0', 'ANIMEXTS1.0']);

/** The end of a run of GIF data sub-blocks starting at `offset` (just past its zero terminator). */
function gifSubBlocksEnd(data: Buffer, offset: number): number {
  let at = offset;
  for (;;) {
    if (at >= data.length) throw new Error('truncated GIF');
    const size = data[at]!;
    at += 1 + size;
    if (size === 0) return at;
  }
}

/**
 * A GIF without comment extensions and application extensions other than looping (XMP packets,
 * a tool's data); frames, palettes and timing untouched, byte for byte.
 */
export function stripGif(data: Buffer): Buffer {
  const signature = data.toString('latin1', 0, 6);
  if (data.length < 13 || (signature !== 'GIF87a' && signature !== 'GIF89a')) throw new Error('not a GIF');
  const packed = data[10]!;
  let offset = 13 + (packed & 0x80 ? 3 * 2 ** ((packed & 0x07) + 1) : 0);
  const kept: Buffer[] = [data.subarray(0, offset)];
  while (offset < data.length) {
    const introducer = data[offset]!;
    if (introducer === 0x3b) {
      kept.push(data.subarray(offset, offset + 1));
      return Buffer.concat(kept);
    }
    if (introducer === 0x2c) {
      const flags = data[offset + 9];
      if (flags === undefined) throw new Error('truncated GIF');
      const pixelsAt = offset + 10 + (flags & 0x80 ? 3 * 2 ** ((flags & 0x07) + 1) : 0);
      const end = gifSubBlocksEnd(data, pixelsAt + 1); // past the LZW minimum code size
      kept.push(data.subarray(offset, end));
      offset = end;
    } else if (introducer === 0x21) {
      const label = data[offset + 1];
      const end = gifSubBlocksEnd(data, offset + 2);
      const application = label === 0xff && data[offset + 2] === 11 ? data.toString('latin1', offset + 3, offset + 14) : null;
      const keep = label === 0xf9 || label === 0x01 || (application !== null && GIF_LOOPING.has(application));
      if (keep) kept.push(data.subarray(offset, end));
      offset = end;
    } else {
      throw new Error('not a GIF block');
    }
  }
  throw new Error('truncated GIF');
}

/** Container formats ffmpeg writes a video back into, by content type. */
const VIDEO_FORMATS: Record<string, string> = { 'video/mp4': 'mp4', 'video/webm': 'webm' };

/**
 * Writes the video file `input` to `output` without its container metadata (title, comment — where
 * ComfyUI's video nodes put the prompt and workflow —, encoder, chapters) and without data or
 * subtitle streams; the picture and sound are copied, not re-encoded. False when ffmpeg is not
 * installed or cannot read it.
 */
export async function stripVideoFile(input: string, output: string, contentType: string): Promise<boolean> {
  const format = VIDEO_FORMATS[contentType];
  if (!format) return false;
  try {
    // no shell; the output is the input's streams copied, so about its size
    await run(
      'ffmpeg',
      [
        '-v', 'error', '-nostdin', '-y', '-i', input,
        '-map', '0:v', '-map', '0:a?', '-c', 'copy',
        '-map_metadata', '-1', '-map_chapters', '-1', '-fflags', '+bitexact',
        ...(format === 'mp4' ? ['-movflags', '+faststart'] : []),
        '-f', format, output,
      ],
      { timeout: 60_000 },
    );
    return true;
  } catch {
    await rm(output, { force: true });
    return false;
  }
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
 * An image as delivered: without the metadata a renderer embedded (prompt, workflow, model names,
 * camera EXIF). PNG, WebP and GIF lose only those chunks and extensions; JPEG is re-encoded by
 * sharp, which keeps no metadata; other types are returned as they are. (Videos are files:
 * `stripVideoFile`.)
 */
export async function stripImageMetadata(data: Buffer, contentType: string): Promise<Buffer> {
  switch (contentType) {
    case 'image/png':
      return stripPng(data);
    case 'image/webp':
      return stripWebp(data);
    case 'image/gif':
      return stripGif(data);
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

/** The first frame of a video file, by ffmpeg when the machine has it; null otherwise. */
async function ffmpegFrame(input: string): Promise<Buffer | null> {
  const output = path.join(tmpdir(), `celforge-poster-${randomUUID()}.png`);
  try {
    await run('ffmpeg', ['-v', 'error', '-nostdin', '-y', '-i', input, '-frames:v', '1', output], { timeout: 30_000 });
    return await sharp(output).toBuffer();
  } catch {
    return null;
  } finally {
    await rm(output, { force: true });
  }
}

/** A plain poster for a video no frame could be taken from (no ffmpeg on this machine). */
function placeholderPoster(): Promise<Buffer> {
  return sharp({ create: { width: THUMBNAIL_PX, height: 216, channels: 3, background: '#1c1b26' } }).webp({ quality: 75 }).toBuffer();
}

/** The poster of a video file: its first frame through ffmpeg, else a plain placeholder. */
export async function videoPoster(file: string): Promise<Buffer> {
  const frame = await ffmpegFrame(file);
  return frame ? imageThumbnail(frame) : placeholderPoster();
}
