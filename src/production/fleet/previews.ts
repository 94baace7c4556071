import type { PreviewFrame } from '../../renderers/renderer.js';
import type { JobEvents } from '../events.js';

/** Live previews go to the job's event stream at most this often … */
export const PREVIEW_INTERVAL_MS = 500;
/** … and none larger than this (a bigger one is skipped, the next may fit). */
export const PREVIEW_MAX_BYTES = 96 * 1024;
const TYPES = new Set(['image/jpeg', 'image/png', 'image/webp']);

/**
 * What a render's preview frames become: `preview` events of the job (≤ 2 per second, size
 * bounded, images only). Job events are keyed by job, and only the job's owner can open its
 * stream, so nobody else ever sees them.
 */
export function previewRelay(events: JobEvents, jobId: string, now: () => number = Date.now): (frame: PreviewFrame) => void {
  let last = -Infinity;
  return (frame) => {
    if (!TYPES.has(frame.contentType) || frame.data.length === 0 || frame.data.length > PREVIEW_MAX_BYTES) return;
    const at = now();
    if (at - last < PREVIEW_INTERVAL_MS) return;
    last = at;
    events.publish({ kind: 'preview', jobId, status: 'running', progress: 0, preview: { contentType: frame.contentType, data: frame.data.toString('base64') } });
  };
}
