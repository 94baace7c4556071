import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Principal } from '../access/principal.js';
import type { Auditor } from '../audit/events.js';
import type { Store } from '../db/database.js';
import { conflict, notFound } from '../http/problem.js';
import { UUID } from '../http/pagination.js';
import type { ProductionService, RequestContext } from '../production/service.js';
import { assetsOf, type AssetRow } from '../assets/store.js';
import { findJob, type JobRow } from '../production/store.js';
import { countOpening, findLiveShareLink, insertShareLink, listShareLinks, revokeShareLink, type ShareLinkRow } from './store.js';

/** `cfs_` and 32 random bytes, base64url: 256 bits, of which Celforge keeps only the SHA-256. */
export const SHARE_TOKEN = /^cfs_[A-Za-z0-9_-]{43}$/;
export const MIN_SHARE_SECONDS = 3600;
export const MAX_SHARE_SECONDS = 30 * 86_400;

const hashToken = (token: string) => createHash('sha256').update(token).digest('hex');

export function shareLinkView(row: ShareLinkRow, now = Date.now()) {
  return {
    id: row.id,
    job_id: row.job_id,
    created_at: row.created_at,
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
    active: row.revoked_at === null && Date.parse(row.expires_at) > now,
    open_count: Number(row.open_count),
    last_opened_at: row.last_opened_at,
  };
}

export interface SharedWork {
  link: ShareLinkRow;
  job: JobRow;
  assets: AssetRow[];
}

/**
 * Share links: an owner lets anyone holding a link see one finished work until it expires
 * (1 hour to 30 days) or is revoked. Every check reads the store, so a revocation is in force on
 * the very next request on every instance.
 */
export class ShareService {
  constructor(private readonly deps: { store: Store; audit: Auditor; production: ProductionService }) {}

  async create(principal: Principal, jobId: string, expiresInSeconds: number, context: RequestContext) {
    const job = await this.deps.production.ownJob(principal, jobId);
    if (job.status !== 'succeeded') throw conflict('Only a job that succeeded can be shared.');
    const token = `cfs_${randomBytes(32).toString('base64url')}`;
    const now = Date.now();
    const row: ShareLinkRow = {
      id: randomUUID(),
      token_hash: hashToken(token),
      job_id: job.id,
      user_id: principal.userId,
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + expiresInSeconds * 1000).toISOString(),
      revoked_at: null,
      open_count: 0,
      last_opened_at: null,
    };
    await insertShareLink(this.deps.store.db, row);
    this.#audit('share.create', principal.userId, row.id, context, { job: job.id, expires_at: row.expires_at });
    return { ...shareLinkView(row, now), token };
  }

  async list(principal: Principal, jobId: string) {
    const job = await this.deps.production.ownJob(principal, jobId);
    const now = Date.now();
    return (await listShareLinks(this.deps.store.db, job.id)).map((row) => shareLinkView(row, now));
  }

  async revoke(principal: Principal, id: string, context: RequestContext): Promise<void> {
    const row = UUID.test(id) ? await revokeShareLink(this.deps.store.db, id, principal.userId, new Date().toISOString()) : undefined;
    if (!row) throw notFound('No such share link.');
    this.#audit('share.revoke', principal.userId, row.id, context, { job: row.job_id });
  }

  /** The work behind a live link, or a 404 that says nothing about why. */
  async resolve(token: string): Promise<SharedWork> {
    const link = SHARE_TOKEN.test(token) ? await findLiveShareLink(this.deps.store.db, hashToken(token), new Date().toISOString()) : undefined;
    const job = link ? await findJob(this.deps.store.db, link.job_id) : undefined;
    if (!link || !job || job.status !== 'succeeded') throw notFound('No such link, or it has expired or been revoked.');
    return { link, job, assets: await assetsOf(this.deps.store.db, [job.id]) };
  }

  /** Opening the link's page: counted and audited (the client address as the audit policy keeps it). */
  async open(token: string, context: RequestContext): Promise<SharedWork> {
    const work = await this.resolve(token);
    await countOpening(this.deps.store.db, work.link.id, new Date().toISOString());
    this.#audit('share.open', null, work.link.id, context, { job: work.job.id });
    return work;
  }

  #audit(action: string, actorId: string | null, target: string, context: RequestContext, detail: Record<string, unknown>): void {
    this.deps.audit.record({ action, outcome: 'success', actorId, target, ip: context.ip, requestId: context.requestId, detail });
  }
}
