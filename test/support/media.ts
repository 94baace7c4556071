import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** What ComfyUI embeds in its results: the workflow (a model path in it) and the prompt. */
export const WORKFLOW = JSON.stringify({ '3': { class_type: 'KSampler', inputs: { seed: 42 } }, '4': { inputs: { ckpt_name: '/home/artist/models/secret-model.safetensors' } } });
export const PROMPT = JSON.stringify({ '6': { inputs: { text: 'a private prompt' } } });

export const FFMPEG = existsSync('/usr/bin/ffmpeg');

/** One red second of 160×120 MP4 made by ffmpeg, with these tags (`-metadata` arguments). */
function mp4(tags: string[] = []): Buffer {
  const dir = mkdtempSync(path.join(tmpdir(), 'celforge-mp4-'));
  try {
    const file = path.join(dir, 'red.mp4');
    execFileSync('ffmpeg', ['-v', 'error', '-f', 'lavfi', '-i', 'color=c=red:s=160x120:d=1', '-pix_fmt', 'yuv420p', ...tags, file]);
    return readFileSync(file);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export const redMp4 = (): Buffer => mp4();

/** The red MP4 as a video node may write it: the workflow and prompt in its tags. */
export const taggedMp4 = (): Buffer =>
  mp4(['-metadata', `comment=${WORKFLOW}`, '-metadata', `title=${PROMPT}`, '-metadata', 'artist=artist@home', '-metadata:s:v', 'handler_name=secret-model']);
