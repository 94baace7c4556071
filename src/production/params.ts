import { createHash, randomInt } from 'node:crypto';
import { Type, type Static } from 'typebox';
import { badRequest } from '../http/problem.js';
import type { JobType } from './store.js';
import { JobTypeSchema } from '../db/schema.js';
import { VIDEO_PIXELS_MAX } from '../renderers/preview.js';

export const PROMPT_MAX = 500;
/** The preview renderer's ceiling for a whole video (width × height × frames). */
export { VIDEO_PIXELS_MAX };

const Side = Type.Integer({ minimum: 64, maximum: 2048, multipleOf: 8 });

/** The body of POST /generate. Prompt lengths are checked again after trimming, in code points. */
export const GenerateBody = Type.Object(
  {
    prompt: Type.String({ minLength: 1, maxLength: 2000 }),
    type: JobTypeSchema,
    negative_prompt: Type.Optional(Type.String({ maxLength: 2000 })),
    width: Type.Optional(Side),
    height: Type.Optional(Side),
    seed: Type.Optional(Type.Integer({ minimum: 0, maximum: 4294967295 })),
    steps: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    frames: Type.Optional(Type.Integer({ minimum: 2, maximum: 120 })),
    fps: Type.Optional(Type.Integer({ minimum: 1, maximum: 60 })),
    style: Type.Optional(Type.String({ minLength: 1, maxLength: 32, pattern: '^[a-z0-9][a-z0-9-]*$' })),
  },
  { additionalProperties: false },
);
export type GenerateBody = Static<typeof GenerateBody>;

export interface JobParams {
  width: number;
  height: number;
  seed: number;
  steps: number;
  frames: number;
  fps: number;
  style?: string;
}

export interface NormalisedRequest {
  type: JobType;
  prompt: string;
  negativePrompt: string;
  params: JobParams;
  /** digest of what the caller asked for (before a random seed is drawn) */
  requestHash: string;
}

const DEFAULTS: Record<JobType, Omit<JobParams, 'seed' | 'style'>> = {
  image: { width: 512, height: 512, steps: 20, frames: 1, fps: 1 },
  video: { width: 512, height: 288, steps: 20, frames: 24, fps: 12 },
};

// C0 controls (tab and newline included), DEL and C1 controls.
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
// What renders as nothing: spaces, format characters (zero-width space/joiners, BOM, bidi marks),
// lone combining marks, variation selectors and the blank Hangul and Braille fillers.
const INVISIBLE = /[\p{White_Space}\p{Cf}\p{M}\u115f\u1160\u3164\uffa0\u2800]/gu;

function checkText(name: string, raw: string, min: number): string {
  const text = raw.trim();
  const length = [...text].length;
  if (length < min) throw badRequest(`${name} must not be empty.`, [{ pointer: `/${name}`, detail: 'is empty after trimming' }]);
  if (length > PROMPT_MAX) {
    throw badRequest(`${name} must be at most ${PROMPT_MAX} characters.`, [{ pointer: `/${name}`, detail: `is longer than ${PROMPT_MAX} characters` }]);
  }
  if (CONTROL.test(text) || LONE_SURROGATE.test(text)) {
    throw badRequest(`${name} must not contain control characters.`, [{ pointer: `/${name}`, detail: 'contains a control character' }]);
  }
  if (min > 0 && text.replace(INVISIBLE, '').length === 0) {
    throw badRequest(`${name} must contain visible characters.`, [{ pointer: `/${name}`, detail: 'has only invisible characters' }]);
  }
  return text;
}

/** The rules of a generation request beyond its schema: trimmed text, per-type fields, defaults. */
export function normalise(body: GenerateBody): NormalisedRequest {
  const prompt = checkText('prompt', body.prompt, 1);
  const negativePrompt = checkText('negative_prompt', body.negative_prompt ?? '', 0);
  if (body.type === 'image') {
    const extra = (['frames', 'fps'] as const).filter((field) => body[field] !== undefined);
    if (extra.length > 0) {
      throw badRequest('frames and fps are for videos only.', extra.map((field) => ({ pointer: `/${field}`, detail: 'is only allowed for type video' })));
    }
  }
  const base = DEFAULTS[body.type];
  const params: JobParams = {
    width: body.width ?? base.width,
    height: body.height ?? base.height,
    seed: body.seed ?? randomInt(0, 2 ** 32),
    steps: body.steps ?? base.steps,
    frames: body.frames ?? base.frames,
    fps: body.fps ?? base.fps,
    ...(body.style !== undefined && { style: body.style }),
  };
  if (body.type === 'video' && params.width * params.height * params.frames > VIDEO_PIXELS_MAX) {
    throw badRequest('The video is too large: lower width, height or frames.', [{ pointer: '/frames', detail: 'width × height × frames is too large' }]);
  }
  const requested = {
    type: body.type,
    prompt,
    negativePrompt,
    width: params.width,
    height: params.height,
    seed: body.seed ?? null,
    steps: params.steps,
    frames: params.frames,
    fps: params.fps,
    style: body.style ?? null,
  };
  const requestHash = createHash('sha256').update(JSON.stringify(requested)).digest('hex');
  return { type: body.type, prompt, negativePrompt, params, requestHash };
}

export function parseParams(text: string): JobParams {
  return JSON.parse(text) as JobParams;
}

/** 1–128 visible ASCII characters. */
export const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,128}$/;
