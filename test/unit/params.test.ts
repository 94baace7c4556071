import { describe, expect, it } from 'vitest';
import { HttpProblem } from '../../src/http/problem.js';
import { IDEMPOTENCY_KEY, normalise, PROMPT_MAX, VIDEO_PIXELS_MAX, type GenerateBody } from '../../src/production/params.js';

function refusal(body: GenerateBody): { status: number; detail: string; pointers: string[] } {
  try {
    normalise(body);
  } catch (error) {
    expect(error).toBeInstanceOf(HttpProblem);
    const problem = error as HttpProblem;
    const errors = (problem.extensions?.errors ?? []) as Array<{ pointer: string }>;
    return { status: problem.status, detail: problem.detail ?? '', pointers: errors.map((e) => e.pointer) };
  }
  throw new Error('normalise accepted the body');
}

describe('job parameters', () => {
  it('fills each type’s defaults and trims the prompts', () => {
    const image = normalise({ type: 'image', prompt: '  a fox at dusk  ', seed: 7 });
    expect(image).toMatchObject({ type: 'image', prompt: 'a fox at dusk', negativePrompt: '' });
    expect(image.params).toEqual({ width: 512, height: 512, seed: 7, steps: 20, frames: 1, fps: 1 });
    const video = normalise({ type: 'video', prompt: 'rain', negative_prompt: ' blur ', seed: 1, style: 'ink' });
    expect(video.negativePrompt).toBe('blur');
    expect(video.params).toEqual({ width: 512, height: 288, seed: 1, steps: 20, frames: 24, fps: 12, style: 'ink' });
  });

  it('draws a seed when none is given, without changing the request hash', () => {
    const seeds = new Set<number>();
    const hashes = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const { params, requestHash } = normalise({ type: 'image', prompt: 'sea' });
      expect(Number.isInteger(params.seed) && params.seed >= 0 && params.seed < 2 ** 32).toBe(true);
      seeds.add(params.seed);
      hashes.add(requestHash);
    }
    expect(seeds.size).toBeGreaterThan(1);
    expect(hashes.size).toBe(1);
  });

  it('hashes what was asked: the same request twice alike, any change different, defaults spelled out alike', () => {
    const hash = (body: GenerateBody) => normalise(body).requestHash;
    const base: GenerateBody = { type: 'image', prompt: 'moon', seed: 3 };
    expect(hash(base)).toMatch(/^[0-9a-f]{64}$/);
    expect(hash({ ...base, prompt: '  moon ' })).toBe(hash(base));
    expect(hash({ ...base, width: 512, height: 512, steps: 20 })).toBe(hash(base));
    expect(hash({ ...base, seed: 4 })).not.toBe(hash(base));
    expect(hash({ ...base, steps: 21 })).not.toBe(hash(base));
    expect(hash({ ...base, style: 'ink' })).not.toBe(hash(base));
    expect(hash({ ...base, type: 'video' })).not.toBe(hash(base));
  });

  it('counts the prompt limit in code points after trimming', () => {
    const emoji = '\u{1F98A}';
    expect(normalise({ type: 'image', prompt: emoji.repeat(PROMPT_MAX) }).prompt).toHaveLength(PROMPT_MAX * 2);
    expect(normalise({ type: 'image', prompt: ` ${'a'.repeat(PROMPT_MAX)} ` }).prompt).toHaveLength(PROMPT_MAX);
    expect(refusal({ type: 'image', prompt: 'a'.repeat(PROMPT_MAX + 1) })).toMatchObject({ status: 400, pointers: ['/prompt'] });
    expect(refusal({ type: 'image', prompt: 'x', negative_prompt: emoji.repeat(PROMPT_MAX + 1) }).pointers).toEqual(['/negative_prompt']);
  });

  it('refuses empty, invisible and control-character prompts', () => {
    for (const prompt of ['   ', '\u200b\u200d', '\u3164', '\u2800 \u2800', '\u0301']) {
      expect(refusal({ type: 'image', prompt }), JSON.stringify(prompt)).toMatchObject({ status: 400, pointers: ['/prompt'] });
    }
    for (const prompt of ['a\nb', 'a\tb', 'a\u0000', 'a\u007f', 'a\u0085', 'a\ud800b', 'a\udc00']) {
      const problem = refusal({ type: 'image', prompt });
      expect(problem.detail, JSON.stringify(prompt)).toMatch(/control characters/);
    }
    // an empty negative prompt is fine, a control character in it is not
    expect(normalise({ type: 'image', prompt: 'ok', negative_prompt: '   ' }).negativePrompt).toBe('');
    expect(refusal({ type: 'image', prompt: 'ok', negative_prompt: 'b\rad' }).pointers).toEqual(['/negative_prompt']);
  });

  it('keeps frames and fps for videos', () => {
    expect(refusal({ type: 'image', prompt: 'x', frames: 2 })).toMatchObject({ status: 400, pointers: ['/frames'] });
    expect(refusal({ type: 'image', prompt: 'x', frames: 2, fps: 3 }).pointers).toEqual(['/frames', '/fps']);
    expect(normalise({ type: 'video', prompt: 'x', frames: 2, fps: 3 }).params).toMatchObject({ frames: 2, fps: 3 });
  });

  it('caps a video’s width × height × frames', () => {
    const frames = Math.floor(VIDEO_PIXELS_MAX / (2048 * 2048));
    expect(normalise({ type: 'video', prompt: 'x', width: 2048, height: 2048, frames }).params.frames).toBe(frames);
    expect(refusal({ type: 'video', prompt: 'x', width: 2048, height: 2048, frames: frames + 1 })).toMatchObject({ status: 400, pointers: ['/frames'] });
  });

  it('takes idempotency keys of 1–128 visible ASCII characters', () => {
    expect(IDEMPOTENCY_KEY.test('a')).toBe(true);
    expect(IDEMPOTENCY_KEY.test('~'.repeat(128))).toBe(true);
    for (const key of ['', 'a'.repeat(129), 'a b', 'caf\u00e9', 'a\n']) expect(IDEMPOTENCY_KEY.test(key), JSON.stringify(key)).toBe(false);
  });
});
