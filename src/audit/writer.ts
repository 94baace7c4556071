import { existsSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import type { AppendReply, WriterMessage } from './writer-thread.js';

/** An append the thread refused; `code` is SQLite's (e.g. SQLITE_BUSY). */
class AppendError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
  }
}

function spawnThread(file: string): Worker {
  const compiled = new URL('./writer-thread.js', import.meta.url);
  if (existsSync(compiled)) return new Worker(compiled, { workerData: { file } });
  // Run from the TypeScript sources (tests, benchmark, from the project folder): the thread loads
  // them through tsx too.
  const source = new URL('./writer-thread.ts', import.meta.url).href;
  const bootstrap = `import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(source)}); });`;
  return new Worker(bootstrap, { eval: true, workerData: { file } });
}

/**
 * The main side of the SQLite audit writer thread. Started on first use and again after it died;
 * it holds the process open only while an append is in flight, so a pending flush is never cut
 * short and an idle writer never keeps the process alive.
 */
export class AuditWriterThread {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly waiting = new Map<number, { resolve: () => void; reject: (error: Error) => void }>();

  constructor(private readonly file: string) {}

  /** Appends a batch of events, given as `encodeEvents` wrote them. */
  append(events: string): Promise<void> {
    const worker = this.worker ?? this.start();
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.waiting.set(id, { resolve, reject });
      if (this.waiting.size === 1) worker.ref();
      worker.postMessage({ id, events } satisfies WriterMessage);
    });
  }

  /** Lets the thread close its connection and end (after the appends sent before), else stops it. */
  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (!worker) return;
    const ended = new Promise((resolve) => worker.once('exit', resolve));
    worker.ref();
    worker.postMessage({ close: true } satisfies WriterMessage);
    const timer = setTimeout(() => void worker.terminate(), 5000);
    await ended;
    clearTimeout(timer);
  }

  private start(): Worker {
    const worker = spawnThread(this.file);
    worker.unref();
    worker.on('message', (reply: AppendReply) => this.settle(reply));
    const fail = (error: Error) => {
      if (this.worker === worker) this.worker = null;
      for (const { reject } of this.waiting.values()) reject(error);
      this.waiting.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the audit writer thread stopped (exit code ${code})`)));
    this.worker = worker;
    return worker;
  }

  private settle({ id, error }: AppendReply): void {
    const waiter = this.waiting.get(id);
    if (!waiter) return;
    this.waiting.delete(id);
    if (this.waiting.size === 0) this.worker?.unref();
    if (error) waiter.reject(new AppendError(error.message, error.code));
    else waiter.resolve();
  }
}
