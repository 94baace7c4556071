import { createParser } from 'eventsource-parser';
import { bearer, refresh } from './session.svelte.ts';
import type { Job } from './types.ts';

export type JobEvent =
  | { kind: 'status'; job: Job }
  | { kind: 'progress'; progress: number; status: Job['status'] }
  /** a live frame of the render so far, as a data: URL an <img> can show under the studio's CSP */
  | { kind: 'preview'; src: string };

const PREVIEW_TYPES = new Set(['image/jpeg', 'image/png', 'image/webp']);
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The data: URL of a `preview` event, or null when it is not an image this page shows. */
function previewSource(data: Record<string, unknown>): string | null {
  const type = data.content_type;
  const body = data.data;
  if (typeof type !== 'string' || !PREVIEW_TYPES.has(type) || typeof body !== 'string' || !BASE64.test(body)) return null;
  return `data:${type};base64,${body}`;
}

/**
 * Follows a job's server-sent events with fetch, so the access token travels in the Authorization
 * header (EventSource could only put it in the URL). Ends when the job does, or on `stop()`.
 */
export function followJob(jobId: string, onEvent: (event: JobEvent) => void, onEnd: () => void = () => {}): () => void {
  const controller = new AbortController();
  const run = async (retried: boolean): Promise<void> => {
    const response = await fetch(`/api/anime/jobs/${encodeURIComponent(jobId)}/events`, {
      headers: { accept: 'text/event-stream', ...bearer() },
      signal: controller.signal,
    });
    if (response.status === 401 && !retried && (await refresh())) return run(true);
    if (!response.ok || !response.body) return;
    const parser = createParser({
      onEvent(message) {
        try {
          const data = JSON.parse(message.data) as Record<string, unknown>;
          if (message.event === 'status') onEvent({ kind: 'status', job: data as unknown as Job });
          else if (message.event === 'progress') onEvent({ kind: 'progress', progress: data.progress as number, status: data.status as Job['status'] });
          else if (message.event === 'preview') {
            const src = previewSource(data);
            if (src) onEvent({ kind: 'preview', src });
          }
        } catch {
          // a malformed event is skipped; the next status carries the whole state
        }
      },
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      parser.feed(value);
    }
  };
  run(false)
    .catch(() => {})
    .finally(() => {
      if (!controller.signal.aborted) onEnd();
    });
  return () => controller.abort();
}
