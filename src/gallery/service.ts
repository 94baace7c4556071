import type { Principal } from '../access/principal.js';
import type { UrlSigner } from '../assets/signed-urls.js';
import type { Auditor } from '../audit/events.js';
import type { Store } from '../db/database.js';
import { conflict } from '../http/problem.js';
import { decodeCursor, encodeCursor, paginate } from '../http/pagination.js';
import { parseParams } from '../production/params.js';
import type { ProductionService, RequestContext } from '../production/service.js';
import { assetsOf } from '../assets/store.js';
import { assetView, type JobView } from '../production/views.js';
import { listPublished, setVisibility, type JobType, type Visibility } from '../production/store.js';

/** Publishing results and showing them: public to everyone, members-only to signed-in users. */
export class GalleryService {
  constructor(
    private readonly deps: { store: Store; signer: UrlSigner; audit: Auditor; production: ProductionService },
  ) {}

  async publish(principal: Principal, jobId: string, visibility: Visibility | null, context: RequestContext): Promise<JobView> {
    const job = await this.deps.production.ownJob(principal, jobId);
    if (job.status !== 'succeeded' || !(await setVisibility(this.deps.store.db, job.id, visibility, new Date().toISOString()))) {
      throw conflict('Only a job that succeeded can be published.');
    }
    this.deps.audit.record({
      action: visibility ? 'job.publish' : 'job.unpublish',
      outcome: 'success',
      actorId: principal.userId,
      target: job.id,
      ip: context.ip,
      requestId: context.requestId,
      detail: visibility ? { visibility } : {},
    });
    return this.deps.production.get(principal, job.id);
  }

  async list(principal: Principal | null, query: { limit?: number; cursor?: string; type?: JobType }) {
    const limit = query.limit ?? 24;
    const rows = await listPublished(this.deps.store.db, {
      visibilities: principal ? ['public', 'members'] : ['public'],
      type: query.type,
      after: decodeCursor(query.cursor),
      limit: limit + 1,
    });
    const { page, next } = paginate(rows, limit, (last) => encodeCursor({ at: last.published_at!, id: last.id }));
    const assets = await assetsOf(this.deps.store.db, page.map((row) => row.id));
    return {
      items: page.map((row) => {
        const params = parseParams(row.params);
        return {
          job_id: row.id,
          type: row.type,
          prompt: row.prompt,
          width: params.width,
          height: params.height,
          visibility: row.visibility!,
          published_at: row.published_at!,
          assets: assets.filter((a) => a.job_id === row.id).map((a) => assetView(a, this.deps.signer)),
        };
      }),
      next_cursor: next,
    };
  }
}
