import { Type, type Static } from 'typebox';
import type { UrlSigner } from '../assets/signed-urls.js';
import { parseParams } from './params.js';
import { JobStatusSchema, JobTypeSchema } from '../db/schema.js';
import type { AssetRow } from '../assets/store.js';
import type { JobRow, OwnedJobRow } from './store.js';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(schema: T) => Type.Union([schema, Type.Null()]);

export const AssetView = Type.Object({
  id: Type.String(),
  content_type: Type.String(),
  byte_size: Type.Integer(),
  /** a signed, short-lived URL that works without credentials (for <img> and <video>) */
  url: Type.String(),
  /** the same, for its 384 px WebP thumbnail (image) or poster (video): what grids show */
  thumbnail_url: Type.String(),
});

export const JobView = Type.Object({
  job_id: Type.String(),
  type: JobTypeSchema,
  status: JobStatusSchema,
  progress: Type.Integer({ minimum: 0, maximum: 100 }),
  prompt: Type.String(),
  negative_prompt: Type.String(),
  params: Type.Object({
    width: Type.Integer(),
    height: Type.Integer(),
    seed: Type.Integer(),
    steps: Type.Integer(),
    frames: Type.Optional(Type.Integer()),
    fps: Type.Optional(Type.Integer()),
    style: Type.Optional(Type.String()),
  }),
  error: Nullable(Type.String()),
  visibility: Nullable(Type.Union([Type.Literal('public'), Type.Literal('members')])),
  published_at: Nullable(Type.String()),
  created_at: Type.String(),
  updated_at: Type.String(),
  started_at: Nullable(Type.String()),
  finished_at: Nullable(Type.String()),
  /** queued jobs: seconds until it is expected to finish, from measured render times */
  eta_seconds: Type.Optional(Type.Integer({ minimum: 0 })),
  assets: Type.Array(AssetView),
});
export type JobView = Static<typeof JobView>;

export const JobPage = Type.Object({ items: Type.Array(JobView), next_cursor: Nullable(Type.String()) });
export type JobPage = Static<typeof JobPage>;

export function assetView(asset: AssetRow, signer: UrlSigner) {
  const url = signer.url(asset.id);
  return { id: asset.id, content_type: asset.content_type, byte_size: asset.byte_size, url, thumbnail_url: url.replace('?', '/thumbnail?') };
}

/** What a job's owner sees: never a renderer path, a worker id or an attempt counter. */
export function jobView(job: JobRow, assets: AssetRow[], signer: UrlSigner): JobView {
  const params = parseParams(job.params);
  return {
    job_id: job.id,
    type: job.type,
    status: job.status,
    progress: job.status === 'succeeded' ? 100 : job.progress,
    prompt: job.prompt,
    negative_prompt: job.negative_prompt,
    params: {
      width: params.width,
      height: params.height,
      seed: params.seed,
      steps: params.steps,
      ...(job.type === 'video' && { frames: params.frames, fps: params.fps }),
      ...(params.style !== undefined && { style: params.style }),
    },
    error: job.error,
    visibility: job.visibility,
    published_at: job.published_at,
    created_at: job.created_at,
    updated_at: job.updated_at,
    started_at: job.started_at,
    finished_at: job.finished_at,
    assets: assets.map((asset) => assetView(asset, signer)),
  };
}

/** A job as the admin console lists it: whose, where it ran, how long it waited and ran. */
export const AdminJob = Type.Object({
  job_id: Type.String(),
  owner: Type.Object({ id: Type.String(), email: Nullable(Type.String()) }),
  type: JobView.properties.type,
  status: JobView.properties.status,
  progress: Type.Integer(),
  prompt: Type.String(),
  error: Nullable(Type.String()),
  /** the renderer in use, and the worker holding the job while it runs */
  renderer: Type.String(),
  worker: Nullable(Type.String()),
  attempts: Type.Integer(),
  created_at: Type.String(),
  started_at: Nullable(Type.String()),
  finished_at: Nullable(Type.String()),
  wait_ms: Nullable(Type.Integer()),
  run_ms: Nullable(Type.Integer()),
});
export type AdminJob = Static<typeof AdminJob>;

export const AdminJobPage = Type.Object({ items: Type.Array(AdminJob), next_cursor: Nullable(Type.String()) });
export type AdminJobPage = Static<typeof AdminJobPage>;

const between = (from: string | null, to: string | null) => (from && to ? Math.max(0, Date.parse(to) - Date.parse(from)) : null);

export function adminJobView(job: OwnedJobRow, renderer: string): AdminJob {
  return {
    job_id: job.id,
    owner: { id: job.user_id, email: job.owner_email },
    type: job.type,
    status: job.status,
    progress: job.progress,
    prompt: job.prompt,
    error: job.error,
    renderer,
    worker: job.locked_by,
    attempts: job.attempts,
    created_at: job.created_at,
    started_at: job.started_at,
    finished_at: job.finished_at,
    wait_ms: between(job.created_at, job.started_at),
    run_ms: between(job.started_at, job.finished_at),
  };
}
