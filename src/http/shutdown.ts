import type { FastifyInstance } from 'fastify';

/** Past the grace period, this much longer for the close hooks (audit flush, store) before exiting anyway. */
const HOOKS_MS = 5_000;

/**
 * Stops a serving process in the order that loses nothing: first it stops taking jobs and hands
 * the ones rendering here back to the queue (another worker or the next start resumes them), then
 * it stops listening and lets requests in flight finish; event streams end with a `shutdown` event.
 * Connections still open after `graceMs` (a stalled client) are closed, so the process always ends.
 */
export async function shutDown(app: FastifyInstance, options: { signal: string; graceMs: number }): Promise<void> {
  const { signal, graceMs } = options;
  const began = Date.now();
  app.log.info({ signal, graceMs }, 'shutting down');
  const hardStop = setTimeout(() => {
    app.log.error({ afterMs: Date.now() - began }, 'shutdown did not finish; exiting anyway');
    process.exit(1);
  }, graceMs + HOOKS_MS);
  hardStop.unref();
  const force = setTimeout(() => {
    app.log.warn({ graceMs }, 'grace period over: closing the connections still open');
    app.server.closeAllConnections();
  }, graceMs);
  force.unref();
  try {
    await app.services?.production.quiesce();
  } catch (error) {
    app.log.warn({ err: error }, 'could not hand every running job back; their leases lapse and another worker takes them');
  }
  await app.close();
  clearTimeout(force);
  clearTimeout(hardStop);
  app.log.info({ ms: Date.now() - began }, 'shut down');
}
