import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import path from 'node:path';
import sharp from 'sharp';
import type { RenderOutput, ResultData } from '../renderers/renderer.js';

/**
 * Video files people can use: whatever frames a renderer made (an animated WebP or GIF, or a batch
 * of stills) become an H.264 MP4 (yuv420p, moov atom first so playback starts before the download
 * ends); the original animation is kept after it. Its poster is the asset store's derivative, as
 * every result's thumbnail is. ffmpeg runs without a shell, with a time limit, and its output file
 * may not pass `maxBytes`; the file carries no metadata (no tags, no encoder version or settings).
 */

export interface VideoOptions {
  /** the ffmpeg binary (default: `ffmpeg` on PATH) */
  ffmpeg?: string;
  timeoutMs?: number;
  /** largest MP4 kept; ffmpeg stops writing there and the conversion fails */
  maxBytes?: number;
  /** largest total of decoded frame bytes accepted (width × height × 3 × frames) */
  maxRawBytes?: number;
}

const DEFAULTS = { ffmpeg: 'ffmpeg', timeoutMs: 120_000, maxBytes: 200 * 1024 * 1024, maxRawBytes: 1024 * 1024 * 1024 };
const STDERR_KEEP = 4096;

export class VideoError extends Error {
  constructor(
    message: string,
    /** ffmpeg is not installed here */
    readonly missing = false,
  ) {
    super(message);
    this.name = 'VideoError';
  }
}

interface Frames {
  width: number;
  height: number;
  count: number;
  /** rgb24, frame after frame: a batch of stills one at a time, an animation's all at once (its decoder reads it from the start) */
  raw: AsyncIterable<Buffer>;
}

const ANIMATED = new Set(['image/webp', 'image/gif']);
const STILLS = new Set(['image/png', 'image/jpeg', 'image/webp']);

const sharpInput = (data: ResultData): Buffer | string => (Buffer.isBuffer(data) ? data : data.path);

/** The frames of a renderer's outputs: one animation, or every still in order (sized as the first). */
async function framesOf(outputs: RenderOutput[], maxRawBytes: number): Promise<Frames | undefined> {
  if (outputs.length === 1 && ANIMATED.has(outputs[0]!.contentType)) {
    const image = sharp(sharpInput(outputs[0]!.data), { pages: -1, animated: true });
    const meta = await image.metadata();
    const count = meta.pages ?? 1;
    const width = meta.width ?? 0;
    const height = meta.pageHeight ?? meta.height ?? 0;
    if (width === 0 || height === 0 || width * height * 3 * count > maxRawBytes) return undefined;
    return { width, height, count, raw: decoded([() => image.removeAlpha().raw().toBuffer()]) };
  }
  const stills = outputs.filter((o) => STILLS.has(o.contentType));
  if (stills.length === 0 || stills.length !== outputs.length) return undefined;
  const first = await sharp(sharpInput(stills[0]!.data)).metadata();
  const width = first.width ?? 0;
  const height = first.height ?? 0;
  if (width === 0 || height === 0 || width * height * 3 * stills.length > maxRawBytes) return undefined;
  const raw = decoded(stills.map((s) => () => sharp(sharpInput(s.data)).resize(width, height, { fit: 'fill' }).removeAlpha().raw().toBuffer()));
  return { width, height, count: stills.length, raw };
}

/** Each decoding's pixels in turn, the next decoded only once ffmpeg has taken the last. */
async function* decoded(decodings: (() => Promise<Buffer>)[]): AsyncIterable<Buffer> {
  for (const decode of decodings) yield await decode();
}

/** Runs ffmpeg (no shell) with `input` on stdin; rejects on a non-zero exit, a frame that cannot be decoded, the time limit or the signal. */
function runFfmpeg(binary: string, args: string[], input: AsyncIterable<Buffer>, timeoutMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(binary, args, { stdio: ['pipe', 'ignore', 'pipe'], shell: false, windowsHide: true });
    let stderr = '';
    let failure: Error | undefined;
    const kill = (error: Error): void => {
      failure ??= error;
      child.kill('SIGKILL');
    };
    const timer = setTimeout(() => kill(new VideoError(`ffmpeg ran longer than ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => kill(signal?.reason instanceof Error ? signal.reason : new Error('aborted'));
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < STDERR_KEEP) stderr += chunk.toString('utf8').slice(0, STDERR_KEEP - stderr.length);
    });
    // ffmpeg may exit before reading everything (an error): that EPIPE is reported through 'close'.
    child.stdin.on('error', () => {});
    child.on('error', (error: NodeJS.ErrnoException) => {
      failure ??= error.code === 'ENOENT' ? new VideoError('ffmpeg is not installed', true) : error;
    });
    const feed = Readable.from(input);
    feed.once('error', kill);
    child.on('close', (code) => {
      feed.destroy();
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (failure) return reject(failure);
      if (code !== 0) return reject(new VideoError(`ffmpeg exited with ${code}: ${stderr.trim().split('\n').at(-1) ?? ''}`));
      resolve();
    });
    feed.pipe(child.stdin);
  });
}

/**
 * The MP4 of a video job's outputs (a file written in `directory`), followed by the outputs themselves; the outputs
 * unchanged when they already hold a video or hold no frames that can be read.
 */
export async function toVideoAssets(
  outputs: RenderOutput[],
  fps: number,
  directory: string,
  options: VideoOptions = {},
  signal?: AbortSignal,
): Promise<RenderOutput[]> {
  const settings = { ...DEFAULTS, ...options };
  if (outputs.some((o) => o.contentType.startsWith('video/'))) return outputs;
  const frames = await framesOf(outputs, settings.maxRawBytes);
  if (!frames) return outputs;
  const file = path.join(directory, `video-${randomUUID()}.mp4`);
  const rate = String(Math.max(1, Math.min(120, Math.round(fps))));
  const args = [
    '-hide_banner', '-loglevel', 'error',
    '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-s', `${frames.width}x${frames.height}`, '-r', rate, '-i', 'pipe:0',
    // yuv420p needs even sides
    '-vf', 'pad=ceil(iw/2)*2:ceil(ih/2)*2',
    '-c:v', 'libx264', '-preset', 'veryfast', '-crf', '20', '-pix_fmt', 'yuv420p',
    // no container tags (encoder name included) and no x264 settings SEI in the stream
    '-map_metadata', '-1', '-fflags', '+bitexact', '-bsf:v', 'filter_units=remove_types=6',
    '-movflags', '+faststart', '-fs', String(settings.maxBytes), '-threads', '1',
    '-y', file,
  ];
  await runFfmpeg(settings.ffmpeg, args, frames.raw, settings.timeoutMs, signal);
  const size = (await stat(file)).size;
  if (size === 0 || size >= settings.maxBytes) throw new VideoError('the video is larger than allowed');
  return [{ data: { path: file }, contentType: 'video/mp4', extension: 'mp4' }, ...outputs];
}
