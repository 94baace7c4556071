import type { Kysely } from 'kysely';
import type { Database } from '../db/schema.js';
import type { JobRow } from '../production/store.js';

export type Visibility = NonNullable<JobRow['visibility']>;

/** Sets or clears a succeeded job's visibility; false when the job is not (or no longer) succeeded. */
export async function setVisibility(db: Kysely<Database>, id: string, visibility: Visibility | null, now: string): Promise<boolean> {
  const result = await db
    .updateTable('jobs')
    .set({ visibility, published_at: visibility ? now : null, updated_at: now })
    .where('id', '=', id)
    .where('status', '=', 'succeeded')
    .executeTakeFirst();
  return Number(result.numUpdatedRows) === 1;
}

export interface GalleryFilter {
  visibilities: Visibility[];
  type?: JobRow['type'];
  after?: { at: string; id: string };
  limit: number;
}

/** Published jobs, newest publication first, by keyset. */
export function listPublished(db: Kysely<Database>, filter: GalleryFilter) {
  let query = db
    .selectFrom('jobs')
    .select(['id', 'type', 'prompt', 'params', 'visibility', 'published_at', 'created_at'])
    .where('visibility', 'in', filter.visibilities)
    .where('status', '=', 'succeeded');
  if (filter.type) query = query.where('type', '=', filter.type);
  const after = filter.after;
  if (after) {
    query = query.where((eb) =>
      eb.or([eb('published_at', '<', after.at), eb.and([eb('published_at', '=', after.at), eb('id', '<', after.id)])]),
    );
  }
  return query.orderBy('published_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
}
