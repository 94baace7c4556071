/**
 * The V8 inspector of a server started with `--inspect=127.0.0.1:0`: a full garbage collection
 * followed by the process's memory figures, and heap snapshots written to a file.
 */
import { createWriteStream } from 'node:fs';
import WebSocket from 'ws';

export interface MemoryFigures {
  heap_used_mb: number;
  /** what V8 holds from the system for its heap, used or not */
  heap_total_mb: number;
  rss_mb: number;
  external_mb: number;
  array_buffers_mb: number;
  /** libvips' operation cache (sharp's, bounded at 50 MB by default), outside the JS heap */
  vips_cache_mb: number | null;
}

/** Run inside the server: its memory figures, and sharp's cache from the server's own node_modules. */
const MEMORY_EXPRESSION = `JSON.stringify({
  usage: process.memoryUsage(),
  vips: (() => { try { return require('module').createRequire(process.cwd() + '/')('sharp').cache().memory.current; } catch { return null; } })(),
})`;

/** Run inside the server: a `gc` performance observer that keeps the heap in use after each major collection. */
const WATCH_MAJOR_GCS = `JSON.stringify((() => {
  const { PerformanceObserver, constants } = require('perf_hooks');
  globalThis.soakMajorGcs = [];
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) globalThis.soakMajorGcs.push(process.memoryUsage().heapUsed);
    }
  }).observe({ entryTypes: ['gc'] });
  return true;
})())`;

const mb = (bytes: number) => Math.round((bytes / 1024 / 1024) * 10) / 10;

/** The `ws://…` address the inspector printed on the server's output. */
export function inspectorUrl(output: string): string | null {
  return /Debugger listening on (ws:\/\/\S+)/.exec(output)?.[1] ?? null;
}

export async function connectInspector(url: string) {
  const socket = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1024 * 1024 * 1024 });
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve());
    socket.once('error', reject);
  });
  let nextId = 1;
  const waiting = new Map<number, { resolve: (result: any) => void; reject: (error: Error) => void }>();
  let onChunk: ((chunk: string) => void) | undefined;
  socket.on('message', (data) => {
    const message = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string }; method?: string; params?: { chunk: string } };
    if (message.method === 'HeapProfiler.addHeapSnapshotChunk') onChunk?.(message.params!.chunk);
    if (message.id === undefined) return;
    const waiter = waiting.get(message.id);
    waiting.delete(message.id);
    if (message.error) waiter?.reject(new Error(message.error.message));
    else waiter?.resolve(message.result);
  });
  const call = (method: string, params: object = {}): Promise<any> =>
    new Promise((resolve, reject) => {
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      socket.send(JSON.stringify({ id, method, params }));
    });

  const evaluate = async (expression: string): Promise<unknown> => {
    const { result } = await call('Runtime.evaluate', { expression, includeCommandLineAPI: true, returnByValue: true });
    return JSON.parse(result.value as string);
  };

  return {
    /** From now on, notes the JS heap in use after each major collection V8 starts of its own accord. */
    async watchMajorGcs(): Promise<void> {
      await evaluate(WATCH_MAJOR_GCS);
    },
    /** The heap in use (MB) after each major collection since the last call. */
    async majorGcs(): Promise<number[]> {
      const bytes = (await evaluate('JSON.stringify(globalThis.soakMajorGcs.splice(0))')) as number[];
      return bytes.map(mb);
    },
    /** Reads `process.memoryUsage()` inside the server, after collecting all garbage when `collect`. */
    async memory(collect: boolean): Promise<MemoryFigures> {
      if (collect) await call('HeapProfiler.collectGarbage');
      const { usage, vips } = (await evaluate(MEMORY_EXPRESSION)) as { usage: NodeJS.MemoryUsage; vips: number | null };
      return {
        heap_used_mb: mb(usage.heapUsed),
        heap_total_mb: mb(usage.heapTotal),
        rss_mb: mb(usage.rss),
        external_mb: mb(usage.external),
        array_buffers_mb: mb(usage.arrayBuffers),
        vips_cache_mb: vips,
      };
    },
    /** Writes a heap snapshot (taken after a full collection) to `file`. */
    async snapshot(file: string): Promise<void> {
      const out = createWriteStream(file);
      onChunk = (chunk) => out.write(chunk);
      await call('HeapProfiler.collectGarbage');
      await call('HeapProfiler.takeHeapSnapshot', { reportProgress: false });
      onChunk = undefined;
      await new Promise<void>((resolve, reject) => out.end((error?: Error | null) => (error ? reject(error) : resolve())));
    },
    close: () => socket.close(),
  };
}
