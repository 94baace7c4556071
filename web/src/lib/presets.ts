import type { JobType } from './types.ts';

export interface Preset {
  id: 'square' | 'portrait' | 'landscape';
  width: number;
  height: number;
}

/** Sizes the renderers are tuned for; videos are smaller, as every frame costs a picture. */
export const PRESETS: Record<JobType, Preset[]> = {
  image: [
    { id: 'square', width: 512, height: 512 },
    { id: 'portrait', width: 512, height: 768 },
    { id: 'landscape', width: 768, height: 512 },
  ],
  video: [
    { id: 'square', width: 384, height: 384 },
    { id: 'portrait', width: 288, height: 512 },
    { id: 'landscape', width: 512, height: 288 },
  ],
};

export const STYLES = ['none', 'anime', 'cel', 'watercolor', 'sketch', 'film'] as const;

export const PROMPT_MAX = 500;

/** The preset a size belongs to, if any. */
export function presetOf(type: JobType, width: number, height: number): Preset['id'] {
  return PRESETS[type].find((p) => p.width === width && p.height === height)?.id ?? (width === height ? 'square' : width > height ? 'landscape' : 'portrait');
}

/** Counted as the API counts: code points after trimming. */
export function promptLength(text: string): number {
  return [...text.trim()].length;
}
