/**
 * The built-in `preview` renderer: no GPU, no network, no fonts. It paints a small procedural
 * anime-style landscape (sky, sun or moon, clouds, hills, sparkles) with a "PREVIEW" banner so the
 * whole pipeline, gallery and web UI work on a fresh machine. Output is a pure function of the
 * request: the same request gives byte-identical output.
 */
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises';
import sharp from 'sharp';
import {
  RendererError,
  type RenderContext,
  type InMemoryOutput,
  type RenderRequest,
  type Renderer,
  type RendererHealth,
} from './renderer.js';

export interface PreviewRendererOptions {
  /** pause between progress ticks, so a job takes a while (tests, crash recovery); default 5 ms */
  stepDelayMs?: number;
}

const DEFAULT_STEP_DELAY_MS = 5;
const MAX_SIDE = 2048;
/**
 * A video is drawn as one raw RGB buffer holding every frame, which sharp then encodes. 64 Mpixel
 * in total (e.g. 2048×2048×16, 1024×1024×64, 512×512×256 frames) is 192 MB raw: the most one
 * preview job may hold. Larger videos are refused rather than silently shrunk.
 */
export const VIDEO_PIXELS_MAX = 64 * 1024 * 1024;
const MAX_FPS = 120;
/** more progress ticks than this add nothing but event noise */
const MAX_TICKS = 150;
/** progress reached when drawing is done; encoding takes the rest */
const DRAWN_PERCENT = 95;
const CHANNELS = 3;
const TAU = Math.PI * 2;
/** Live preview frames: at most one per this long, at most this wide (JPEG). */
const PREVIEW_EVERY_MS = 500;
const PREVIEW_SIDE = 256;

/** Sends a small JPEG of the picture so far, now and then, without holding up the render. */
class PreviewFeed {
  #last = 0;

  constructor(private readonly context: RenderContext) {}

  offer(pixels: Buffer, width: number, height: number): void {
    const send = this.context.onPreview;
    const now = Date.now();
    if (!send || now - this.#last < PREVIEW_EVERY_MS) return;
    this.#last = now;
    sharp(Buffer.from(pixels), { raw: { width, height, channels: CHANNELS } })
      .resize({ width: Math.min(width, PREVIEW_SIDE), withoutEnlargement: true })
      .jpeg({ quality: 60 })
      .toBuffer()
      .then((data) => {
        if (!this.context.signal.aborted) send.call(this.context, { contentType: 'image/jpeg', data });
      })
      .catch(() => undefined);
  }
}

export class PreviewRenderer implements Renderer {
  readonly name = 'preview';
  readonly #stepDelayMs: number;

  constructor(options: PreviewRendererOptions = {}) {
    const delay = options.stepDelayMs ?? DEFAULT_STEP_DELAY_MS;
    if (!Number.isFinite(delay) || delay < 0) {
      throw new RangeError('stepDelayMs must be a non-negative number');
    }
    this.#stepDelayMs = delay;
  }

  async render(request: RenderRequest, context: RenderContext): Promise<InMemoryOutput[]> {
    const { signal } = context;
    signal.throwIfAborted();
    validate(request);
    const scene = buildScene(request);
    const progress = monotonicProgress(context.onProgress);
    progress(0);
    const feed = new PreviewFeed(context);
    const output =
      request.type === 'video'
        ? await this.#renderVideo(request, scene, signal, progress, feed)
        : await this.#renderImage(request, scene, signal, progress, feed);
    signal.throwIfAborted();
    progress(100);
    return [output];
  }

  async health(): Promise<RendererHealth> {
    return { name: this.name, ok: true };
  }

  /** Draws the image in horizontal bands, one progress tick per band (`steps` bands, capped). */
  async #renderImage(
    request: RenderRequest,
    scene: Scene,
    signal: AbortSignal,
    progress: (percent: number) => void,
    feed: PreviewFeed,
  ): Promise<InMemoryOutput> {
    const { width, height } = request;
    const pixels = Buffer.alloc(width * height * CHANNELS);
    const frame = frameOver(pixels, width, height);
    const ticks = Math.min(request.steps, MAX_TICKS);
    for (let i = 0; i < ticks; i++) {
      frame.y0 = Math.round((height * i) / ticks);
      frame.y1 = Math.round((height * (i + 1)) / ticks);
      drawScene(frame, scene, 0);
      progress((DRAWN_PERCENT * (i + 1)) / ticks);
      feed.offer(pixels, width, height);
      await pause(this.#stepDelayMs, signal);
    }
    const encoding = sharp(pixels, { raw: { width, height, channels: CHANNELS } })
      .png({ compressionLevel: 6 })
      .toBuffer();
    const data = await unlessAborted(encoding, signal);
    return { data, contentType: 'image/png', extension: 'png' };
  }

  /** Draws every frame into one buffer (frames stacked vertically), one progress tick per frame. */
  async #renderVideo(
    request: RenderRequest,
    scene: Scene,
    signal: AbortSignal,
    progress: (percent: number) => void,
    feed: PreviewFeed,
  ): Promise<InMemoryOutput> {
    const { width, height, frames } = request;
    const frameBytes = width * height * CHANNELS;
    const pixels = Buffer.alloc(frameBytes * frames);
    for (let f = 0; f < frames; f++) {
      const frame = frameOver(pixels.subarray(f * frameBytes, (f + 1) * frameBytes), width, height);
      drawScene(frame, scene, f / frames);
      progress((DRAWN_PERCENT * (f + 1)) / frames);
      feed.offer(pixels.subarray(f * frameBytes, (f + 1) * frameBytes), width, height);
      await pause(this.#stepDelayMs, signal);
    }
    const delay = Math.round(1000 / request.fps);
    const encoding = sharp(pixels, {
      raw: { width, height: height * frames, channels: CHANNELS, pageHeight: height },
    })
      .webp({ quality: 80, effort: 4, loop: 0, delay: new Array<number>(frames).fill(delay) })
      .toBuffer();
    const data = await unlessAborted(encoding, signal);
    return { data, contentType: 'image/webp', extension: 'webp' };
  }
}

// ---------------------------------------------------------------------------------------------
// request checks, progress, cancellation

function invalid(message: string): never {
  throw new RendererError(message, false);
}

function checkWholeNumber(value: number, min: number, max: number | undefined, what: string): void {
  if (Number.isInteger(value) && value >= min && (max === undefined || value <= max)) return;
  invalid(
    max === undefined
      ? `${what} must be a whole number of at least ${min}`
      : `${what} must be a whole number from ${min} to ${max}`,
  );
}

/** The API validates requests; this catches whatever slips through, with messages for the owner. */
function validate(request: RenderRequest): void {
  if (request.type !== 'image' && request.type !== 'video') invalid('unknown job type');
  checkWholeNumber(request.width, 1, MAX_SIDE, 'width');
  checkWholeNumber(request.height, 1, MAX_SIDE, 'height');
  checkWholeNumber(request.steps, 1, undefined, 'steps');
  if (!Number.isFinite(request.seed)) invalid('seed must be a number');
  if (typeof request.prompt !== 'string') invalid('prompt must be text');
  if (request.type !== 'video') return;
  checkWholeNumber(request.frames, 1, undefined, 'frames');
  if (!Number.isFinite(request.fps) || request.fps < 1 || request.fps > MAX_FPS) {
    invalid(`fps must be from 1 to ${MAX_FPS}`);
  }
  if (request.width * request.height * request.frames > VIDEO_PIXELS_MAX) {
    invalid('video too large for the preview renderer');
  }
}

/** Reports whole percentages, never going backwards and never repeating a value. */
function monotonicProgress(onProgress: (percent: number) => void): (percent: number) => void {
  let last = -1;
  return (percent) => {
    const value = Math.min(100, Math.floor(percent));
    if (value <= last) return;
    last = value;
    onProgress(value);
  };
}

/** Waits `ms` (or one turn of the event loop), rejecting with the signal's reason on abort. */
async function pause(ms: number, signal: AbortSignal): Promise<void> {
  signal.throwIfAborted();
  const waited = ms > 0 ? sleep(ms, undefined, { signal }) : nextTurn(undefined, { signal });
  await waited.catch(() => signal.throwIfAborted());
}

/**
 * sharp cannot be interrupted, so an abort during encoding rejects at once and the encoder's
 * result, when it comes, is dropped.
 */
function unlessAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  return new Promise((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    if (signal.aborted) {
      onAbort();
    } else {
      signal.addEventListener('abort', onAbort, { once: true });
    }
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        if (signal.aborted) reject(signal.reason);
        else resolve(value);
      },
      (error: unknown) => {
        signal.removeEventListener('abort', onAbort);
        const message = 'the preview renderer could not encode the result';
        reject(new RendererError(message, false, { cause: error }));
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// randomness

/** FNV-1a over the UTF-8 bytes of the request's creative fields. */
function requestHash(request: RenderRequest): number {
  const key = [request.seed, request.prompt, request.negativePrompt, request.style ?? ''].join('\u0000');
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(key, 'utf8')) {
    hash = Math.imul(hash ^ byte, 0x01000193);
  }
  return hash >>> 0;
}

type Rng = () => number;

/** mulberry32: a tiny, fast, well-mixed 32-bit PRNG; returns [0, 1). */
function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function between(rng: Rng, min: number, max: number): number {
  return min + rng() * (max - min);
}

function pick<T>(rng: Rng, items: readonly T[]): T {
  return items[Math.floor(rng() * items.length)]!;
}

// ---------------------------------------------------------------------------------------------
// scene

type Rgb = readonly [number, number, number];

interface Palette {
  skyTop: Rgb;
  skyBottom: Rgb;
  sun: Rgb;
  glow: Rgb;
  cloud: Rgb;
  cloudShade: Rgb;
  /** far to near */
  hills: readonly [Rgb, Rgb, Rgb];
  sparkle: Rgb;
  accent: Rgb;
  night: boolean;
}

const PALETTES: readonly Palette[] = [
  {
    // sunset
    skyTop: [58, 40, 112],
    skyBottom: [255, 154, 122],
    sun: [255, 236, 170],
    glow: [255, 196, 150],
    cloud: [255, 214, 222],
    cloudShade: [214, 140, 170],
    hills: [[150, 84, 140], [104, 56, 118], [58, 34, 82]],
    sparkle: [255, 245, 200],
    accent: [255, 120, 150],
    night: false,
  },
  {
    // summer noon
    skyTop: [64, 136, 232],
    skyBottom: [184, 228, 255],
    sun: [255, 250, 222],
    glow: [255, 255, 238],
    cloud: [255, 255, 255],
    cloudShade: [192, 212, 242],
    hills: [[126, 204, 132], [72, 164, 104], [38, 112, 82]],
    sparkle: [255, 255, 255],
    accent: [90, 170, 255],
    night: false,
  },
  {
    // moonlit night
    skyTop: [12, 16, 48],
    skyBottom: [64, 62, 134],
    sun: [246, 244, 222],
    glow: [150, 160, 222],
    cloud: [96, 94, 156],
    cloudShade: [64, 62, 116],
    hills: [[54, 62, 114], [36, 40, 86], [20, 22, 56]],
    sparkle: [255, 255, 214],
    accent: [150, 126, 255],
    night: true,
  },
  {
    // dawn
    skyTop: [118, 148, 222],
    skyBottom: [255, 204, 172],
    sun: [255, 242, 204],
    glow: [255, 222, 192],
    cloud: [255, 242, 242],
    cloudShade: [222, 182, 202],
    hills: [[152, 170, 204], [110, 128, 172], [78, 88, 140]],
    sparkle: [255, 255, 240],
    accent: [255, 170, 130],
    night: false,
  },
  {
    // sakura
    skyTop: [255, 164, 198],
    skyBottom: [255, 232, 238],
    sun: [255, 255, 242],
    glow: [255, 216, 230],
    cloud: [255, 250, 252],
    cloudShade: [242, 192, 212],
    hills: [[242, 146, 176], [204, 104, 152], [150, 70, 122]],
    sparkle: [255, 255, 255],
    accent: [230, 90, 140],
    night: false,
  },
  {
    // seaside
    skyTop: [30, 112, 146],
    skyBottom: [172, 236, 222],
    sun: [255, 250, 212],
    glow: [222, 255, 236],
    cloud: [242, 255, 250],
    cloudShade: [162, 212, 202],
    hills: [[84, 172, 152], [42, 132, 132], [22, 82, 102]],
    sparkle: [255, 255, 232],
    accent: [60, 200, 180],
    night: false,
  },
];

interface Sun {
  x: number;
  y: number;
  r: number;
  /** how far it travels over one loop of a video */
  swingX: number;
  swingY: number;
  craters: { dx: number; dy: number; r: number }[];
}

interface Cloud {
  x: number;
  y: number;
  /** the flat underside */
  bottom: number;
  puffs: { dx: number; dy: number; r: number }[];
  drift: number;
}

interface Hill {
  base: number;
  waves: { amp: number; freq: number; phase: number }[];
  color: Rgb;
  rim: Rgb;
  rimWidth: number;
  sway: number;
}

interface Sparkle {
  x: number;
  y: number;
  r: number;
  /** whole twinkles per video loop, so the loop is seamless */
  speed: number;
  phase: number;
}

interface Scene {
  palette: Palette;
  sun: Sun;
  clouds: Cloud[];
  hills: Hill[];
  sparkles: Sparkle[];
}

/** Everything random is decided here, once; drawing is then a pure function of (scene, time). */
function buildScene(request: RenderRequest): Scene {
  const rng = mulberry32(requestHash(request));
  const { width: w, height: h } = request;
  const size = Math.min(w, h);
  const palette = pick(rng, PALETTES);
  const sun = buildSun(rng, w, h, size, palette.night);
  const clouds = Array.from({ length: 2 + Math.floor(rng() * 3) }, () => buildCloud(rng, w, h, size));
  const horizon = h * between(rng, 0.48, 0.6);
  const hills = palette.hills.map((color, layer) => buildHill(rng, h, size, horizon, color, layer));
  const count = palette.night ? 28 + Math.floor(rng() * 16) : 7 + Math.floor(rng() * 8);
  const sparkles = Array.from({ length: count }, () => buildSparkle(rng, w, horizon, size, palette.night));
  return { palette, sun, clouds, hills, sparkles };
}

function buildSun(rng: Rng, w: number, h: number, size: number, night: boolean): Sun {
  const r = size * between(rng, 0.07, 0.11);
  const crater = () => ({
    dx: between(rng, -0.45, 0.45) * r,
    dy: between(rng, -0.45, 0.45) * r,
    r: between(rng, 0.12, 0.22) * r,
  });
  const craters = night ? Array.from({ length: 3 }, crater) : [];
  return {
    x: w * between(rng, 0.2, 0.8),
    y: h * between(rng, 0.14, 0.34),
    r,
    swingX: w * between(rng, 0.06, 0.12) * (rng() < 0.5 ? -1 : 1),
    swingY: h * between(rng, 0.02, 0.05),
    craters,
  };
}

function buildCloud(rng: Rng, w: number, h: number, size: number): Cloud {
  const unit = size * between(rng, 0.05, 0.08);
  const count = 3 + Math.floor(rng() * 3);
  const puffs = Array.from({ length: count }, (_, i) => {
    // bigger puffs in the middle give the classic anime cumulus silhouette
    const centred = 1 - Math.abs(i - (count - 1) / 2) / count;
    const r = unit * (0.7 + centred * between(rng, 0.5, 0.9));
    return { dx: (i - (count - 1) / 2) * unit * 1.1, dy: -r * 0.35, r };
  });
  const y = h * between(rng, 0.12, 0.42);
  return {
    x: w * between(rng, 0.05, 0.95),
    y,
    bottom: y + unit * 0.45,
    puffs,
    drift: w * between(rng, 0.02, 0.06),
  };
}

function buildHill(rng: Rng, h: number, size: number, horizon: number, color: Rgb, layer: number): Hill {
  const waves = Array.from({ length: 2 }, (_, i) => ({
    amp: h * between(rng, 0.015, 0.05) / (i + 1),
    freq: between(rng, 0.6, 1.8) * (i + 1),
    phase: rng() * TAU,
  }));
  return {
    base: horizon + layer * h * between(rng, 0.08, 0.11),
    waves,
    color,
    rim: mix(color, [255, 255, 255], 0.22),
    rimWidth: Math.max(1, size * 0.012),
    sway: size * 0.02 * (3 - layer),
  };
}

function buildSparkle(rng: Rng, w: number, horizon: number, size: number, night: boolean): Sparkle {
  return {
    x: rng() * w,
    y: rng() * horizon * 0.95,
    r: size * (night ? between(rng, 0.008, 0.025) : between(rng, 0.015, 0.035)),
    speed: 1 + Math.floor(rng() * 3),
    phase: rng(),
  };
}

// ---------------------------------------------------------------------------------------------
// drawing

/** An RGB pixel buffer; drawing touches only rows y0 ≤ y < y1, so an image can be drawn in bands. */
interface Frame {
  px: Uint8ClampedArray;
  width: number;
  height: number;
  y0: number;
  y1: number;
}

function frameOver(buffer: Buffer, width: number, height: number): Frame {
  // a clamped view rounds and clamps blended values instead of wrapping them
  const px = new Uint8ClampedArray(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  return { px, width, height, y0: 0, y1: height };
}

/** Paints one scene at time t ∈ [0, 1) of a seamless loop (images use t = 0). */
function drawScene(frame: Frame, scene: Scene, t: number): void {
  const { palette } = scene;
  drawSky(frame, palette);
  drawSun(frame, scene.sun, palette, t);
  for (const cloud of scene.clouds) drawCloud(frame, cloud, palette, t);
  scene.hills.forEach((hill) => drawHill(frame, hill, t));
  for (const sparkle of scene.sparkles) drawSparkle(frame, sparkle, palette.sparkle, t);
  drawBanner(frame, palette.accent);
}

function mix(a: Rgb, b: Rgb, amount: number): Rgb {
  return [a[0] + (b[0] - a[0]) * amount, a[1] + (b[1] - a[1]) * amount, a[2] + (b[2] - a[2]) * amount];
}

function clamp01(value: number): number {
  return value < 0 ? 0 : value > 1 ? 1 : value;
}

function paint(frame: Frame, x: number, y: number, color: Rgb, alpha: number): void {
  const px = frame.px;
  const i = (y * frame.width + x) * CHANNELS;
  if (alpha >= 1) {
    px[i] = color[0];
    px[i + 1] = color[1];
    px[i + 2] = color[2];
    return;
  }
  px[i] = px[i]! + (color[0] - px[i]!) * alpha;
  px[i + 1] = px[i + 1]! + (color[1] - px[i + 1]!) * alpha;
  px[i + 2] = px[i + 2]! + (color[2] - px[i + 2]!) * alpha;
}

/** The rows and columns of a box that lie in the frame's drawable band. */
function clip(frame: Frame, left: number, top: number, right: number, bottom: number) {
  return {
    x0: Math.max(0, Math.floor(left)),
    x1: Math.min(frame.width, Math.ceil(right)),
    y0: Math.max(frame.y0, Math.floor(top)),
    y1: Math.min(frame.y1, Math.ceil(bottom)),
  };
}

function fillRect(
  frame: Frame,
  left: number,
  top: number,
  right: number,
  bottom: number,
  color: Rgb,
  alpha = 1,
): void {
  const box = clip(frame, left, top, right, bottom);
  for (let y = box.y0; y < box.y1; y++) {
    for (let x = box.x0; x < box.x1; x++) paint(frame, x, y, color, alpha);
  }
}

/** An anti-aliased disc. */
function drawDisc(frame: Frame, cx: number, cy: number, r: number, color: Rgb, alpha = 1): void {
  const box = clip(frame, cx - r - 1, cy - r - 1, cx + r + 1, cy + r + 1);
  for (let y = box.y0; y < box.y1; y++) {
    const dy = y + 0.5 - cy;
    for (let x = box.x0; x < box.x1; x++) {
      const coverage = clamp01(r - Math.hypot(x + 0.5 - cx, dy) + 0.5);
      if (coverage > 0) paint(frame, x, y, color, coverage * alpha);
    }
  }
}

function drawSky(frame: Frame, palette: Palette): void {
  const rowBytes = frame.width * CHANNELS;
  const span = Math.max(1, frame.height - 1);
  for (let y = frame.y0; y < frame.y1; y++) {
    const [r, g, b] = mix(palette.skyTop, palette.skyBottom, (y / span) ** 1.3);
    const start = y * rowBytes;
    for (let i = start; i < start + rowBytes; i += CHANNELS) {
      frame.px[i] = r;
      frame.px[i + 1] = g;
      frame.px[i + 2] = b;
    }
  }
}

/** Sun (or moon) with stepped cel-style halo rings; it travels round a small loop in a video. */
function drawSun(frame: Frame, sun: Sun, palette: Palette, t: number): void {
  const x = sun.x + sun.swingX * Math.sin(TAU * t);
  const y = sun.y + sun.swingY * (1 - Math.cos(TAU * t));
  drawDisc(frame, x, y, sun.r * 2.3, palette.glow, 0.16);
  drawDisc(frame, x, y, sun.r * 1.55, palette.glow, 0.3);
  drawDisc(frame, x, y, sun.r, palette.sun);
  const craterColor = mix(palette.sun, palette.glow, 0.5);
  for (const crater of sun.craters) drawDisc(frame, x + crater.dx, y + crater.dy, crater.r, craterColor, 0.7);
}

/** Round puffs over a flat underside; the lower part is flat-shaded like a cel. */
function drawCloud(frame: Frame, cloud: Cloud, palette: Palette, t: number): void {
  const cx = cloud.x + cloud.drift * Math.sin(TAU * t);
  const extent = cloud.puffs.reduce((most, p) => Math.max(most, Math.abs(p.dx) + p.r), 0);
  const top = cloud.puffs.reduce((least, p) => Math.min(least, cloud.y + p.dy - p.r), cloud.y);
  const shadeFrom = cloud.y - (cloud.bottom - cloud.y) * 0.2;
  const box = clip(frame, cx - extent - 1, top - 1, cx + extent + 1, cloud.bottom + 1);
  for (let y = box.y0; y < box.y1; y++) {
    const py = y + 0.5;
    const under = clamp01(cloud.bottom - py + 0.5);
    if (under <= 0) continue;
    const color = py > shadeFrom ? palette.cloudShade : palette.cloud;
    for (let x = box.x0; x < box.x1; x++) {
      let coverage = 0;
      for (const p of cloud.puffs) {
        const distance = Math.hypot(x + 0.5 - cx - p.dx, py - cloud.y - p.dy);
        coverage = Math.max(coverage, clamp01(p.r - distance + 0.5));
      }
      if (coverage > 0) paint(frame, x, y, color, coverage * under);
    }
  }
}

/** A rolling ridge filled to the bottom edge, with a lighter rim along its top. */
function drawHill(frame: Frame, hill: Hill, t: number): void {
  const shift = hill.sway * Math.sin(TAU * t);
  for (let x = 0; x < frame.width; x++) {
    const u = (x + shift) / Math.max(1, frame.width);
    let top = hill.base;
    for (const wave of hill.waves) top += wave.amp * Math.sin(TAU * wave.freq * u + wave.phase);
    for (let y = Math.max(frame.y0, Math.floor(top)); y < frame.y1; y++) {
      const coverage = clamp01(y + 1 - top);
      paint(frame, x, y, y - top < hill.rimWidth ? hill.rim : hill.color, coverage);
    }
  }
}

/** A four-pointed star whose size pulses; |x|^½ + |y|^½ < 1 is the classic sparkle outline. */
function drawSparkle(frame: Frame, sparkle: Sparkle, color: Rgb, t: number): void {
  const r = sparkle.r * (0.55 + 0.45 * Math.sin(TAU * (sparkle.speed * t + sparkle.phase)));
  if (r < 0.75) return;
  const box = clip(frame, sparkle.x - r, sparkle.y - r, sparkle.x + r, sparkle.y + r);
  for (let y = box.y0; y < box.y1; y++) {
    const ny = Math.abs(y + 0.5 - sparkle.y) / r;
    for (let x = box.x0; x < box.x1; x++) {
      const nx = Math.abs(x + 0.5 - sparkle.x) / r;
      const alpha = clamp01((1 - Math.sqrt(nx) - Math.sqrt(ny)) * r * 0.5 + 0.5);
      if (alpha > 0) paint(frame, x, y, color, alpha);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the PREVIEW banner, drawn with a hand-made 5×7 bitmap font (the machine may have no fonts)

const GLYPHS: Readonly<Record<string, readonly string[]>> = {
  P: ['11110', '10001', '10001', '11110', '10000', '10000', '10000'],
  R: ['11110', '10001', '10001', '11110', '10100', '10010', '10001'],
  E: ['11111', '10000', '10000', '11110', '10000', '10000', '11111'],
  V: ['10001', '10001', '10001', '10001', '10001', '01010', '00100'],
  I: ['01110', '00100', '00100', '00100', '00100', '00100', '01110'],
  W: ['10001', '10001', '10001', '10101', '10101', '10101', '01010'],
};
const GLYPH_WIDTH = 5;
const GLYPH_HEIGHT = 7;
const BANNER_TEXT = 'PREVIEW';
const TEXT_COLOR: Rgb = [255, 255, 255];
const SHADE_COLOR: Rgb = [18, 14, 34];

/** A translucent strip across the lower part of the picture with "PREVIEW" centred on it. */
function drawBanner(frame: Frame, accent: Rgb): void {
  const { width, height } = frame;
  const size = Math.min(width, height);
  const stripHeight = Math.min(height, Math.max(GLYPH_HEIGHT + 4, Math.round(size * 0.12)));
  const top = Math.max(0, Math.min(height - stripHeight, Math.round(height * 0.8 - stripHeight / 2)));
  const edge = Math.max(1, Math.round(stripHeight * 0.06));
  fillRect(frame, 0, top, width, top + stripHeight, SHADE_COLOR, 0.58);
  fillRect(frame, 0, top, width, top + edge, accent);
  fillRect(frame, 0, top + stripHeight - edge, width, top + stripHeight, accent);

  const columns = BANNER_TEXT.length * (GLYPH_WIDTH + 1) - 1;
  const fitHeight = Math.floor((stripHeight * 0.6) / GLYPH_HEIGHT);
  const fitWidth = Math.floor((width * 0.8) / columns);
  const scale = Math.max(1, Math.min(fitHeight, fitWidth));
  const left = Math.floor((width - columns * scale) / 2);
  const textTop = top + Math.floor((stripHeight - GLYPH_HEIGHT * scale) / 2);
  const shadow = Math.max(1, Math.floor(scale / 3));
  drawText(frame, BANNER_TEXT, left + shadow, textTop + shadow, scale, SHADE_COLOR);
  drawText(frame, BANNER_TEXT, left, textTop, scale, TEXT_COLOR);
}

function drawText(frame: Frame, text: string, left: number, top: number, scale: number, color: Rgb): void {
  [...text].forEach((char, index) => {
    const glyph = GLYPHS[char] ?? [];
    const x0 = left + index * (GLYPH_WIDTH + 1) * scale;
    glyph.forEach((row, gy) => {
      for (let gx = 0; gx < row.length; gx++) {
        if (row[gx] !== '1') continue;
        const x = x0 + gx * scale;
        const y = top + gy * scale;
        fillRect(frame, x, y, x + scale, y + scale, color);
      }
    });
  });
}
