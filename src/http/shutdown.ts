import closeWithGrace from 'close-with-grace';
import type { FastifyBaseLogger, FastifyInstance } from 'fastify';

/** Past the grace period, this much longer for the close hooks (audit flush, store) before exiting anyway. */
export const HOOKS_MS = 5_000;

/** Every event close-with-grace would handle besides SIGINT and SIGTERM: those keep Node's own behaviour. */
const OTHER_EVENTS: closeWithGrace.AllEvents[] = [
  'SIGHUP',
  'SIGQUIT',
  'SIGILL',
  'SIGTRAP',
  'SIGABRT',
  'SIGBUS',
  'SIGFPE',
  'SIGSEGV',
  'SIGUSR2',
  'uncaughtException',
  'unhandledRejection',
  'beforeExit',
];

/**
 * On the first SIGINT or SIGTERM runs `stop`, then exits 0; exits 1 when `stop` fails, when it is
 * still running after `limitMs`, or on a second signal.
 */
export function stopOnSignal(log: FastifyBaseLogger, limitMs: number, stop: (signal: string) => Promise<void>): void {
  closeWithGrace(
    {
      delay: limitMs,
      logger: false,
      skip: OTHER_EVENTS,
      onTimeout: () => log.error({ afterMs: limitMs }, 'shutdown did not finish; exiting anyway'),
      onSecondSignal: (signal) => log.warn({ signal }, 'second signal during shutdown; exiting now'),
    },
    async ({ signal }) => {
      try {
        await stop(signal ?? 'SIGTERM');
      } catch (error) {
        log.error({ err: error }, 'shutdown failed');
        throw error;
      }
    },
  );
}

/**
 * Stops a serving process in the order that loses nothing: first it stops taking jobs and hands
 * the ones rendering here back to the queue (another worker or the next start resumes them), then
 * it stops listening and lets requests in flight finish; event streams end with a `shutdown` event.
 * Connections still open after `graceMs` (a stalled client) are closed, so the process always ends.
 * Run it through `stopOnSignal` with `graceMs + HOOKS_MS` as the limit.
 */
export async function shutDown(app: FastifyInstance, options: { signal: string; graceMs: number }): Promise<void> {
  const { signal, graceMs } = options;
  const began = Date.now();
  app.log.info({ signal, graceMs }, 'shutting down');
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
  app.log.info({ ms: Date.now() - began }, 'shut down');
}
