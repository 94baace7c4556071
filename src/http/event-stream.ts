import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';

/** A client this far behind is not reading: it is dropped, and on reconnecting starts from the whole state again. */
const MAX_BUFFERED_BYTES = 1024 * 1024;

/** One open `text/event-stream` response. */
export interface EventStream {
  /** the `Last-Event-ID` the client sent when it reconnected, if any */
  readonly lastEventId: string | undefined;
  readonly isOpen: boolean;
  /** one event; `retry` tells the client how long to wait before reconnecting */
  send(event: string, data: unknown, retry?: number): void;
  /** a comment line, which keeps proxies from closing a quiet stream */
  keepAlive(): void;
  /** ends the response */
  close(): void;
  /** drops the connection, so the client sees the stream fail rather than end */
  destroy(): void;
}

export interface EventStreamOptions {
  heartbeatMs: number;
  /** what each heartbeat does; by default `keepAlive()` */
  onHeartbeat?: (stream: EventStream) => void;
  /** the last words when the server begins to close; the stream is ended after them */
  onShutdown?: (stream: EventStream) => void;
  /** told once when the stream ends, whichever side ends it */
  onClose?: () => void;
}

/**
 * Server-sent event streams of one plugin: headers, heartbeat, a limit on what a slow client may
 * leave unread, and an end for every open stream when the server begins to close (an open stream
 * would keep it from closing).
 */
export function eventStreams(app: FastifyInstance) {
  const open = new Set<() => void>();
  app.addHook('preClose', async () => {
    for (const shutdown of open) shutdown();
  });

  return function openEventStream(request: FastifyRequest, reply: FastifyReply, options: EventStreamOptions): EventStream {
    const raw = reply.raw;
    reply.hijack();
    raw.writeHead(200, {
      ...(reply.getHeaders() as Record<string, string>),
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      'x-accel-buffering': 'no',
      'x-request-id': String(request.id),
    });
    let isOpen = true;
    const write = (text: string) => {
      if (!isOpen) return;
      if (!raw.write(text) && raw.writableLength > MAX_BUFFERED_BYTES) stream.destroy();
    };
    const end = (how: 'end' | 'destroy') => {
      if (!isOpen) return;
      isOpen = false;
      clearInterval(heartbeat);
      open.delete(shutdown);
      options.onClose?.();
      if (how === 'end') raw.end();
      else raw.destroy();
    };
    const header = request.headers['last-event-id'];
    const stream: EventStream = {
      lastEventId: typeof header === 'string' ? header : undefined,
      get isOpen() {
        return isOpen;
      },
      send: (event, data, retry) => write(`event: ${event}\n${retry === undefined ? '' : `retry: ${retry}\n`}data: ${JSON.stringify(data)}\n\n`),
      keepAlive: () => write(': keep-alive\n\n'),
      close: () => end('end'),
      destroy: () => end('destroy'),
    };
    const shutdown = () => {
      options.onShutdown?.(stream);
      stream.close();
    };
    const beat = options.onHeartbeat ?? ((it: EventStream) => it.keepAlive());
    const heartbeat = setInterval(() => beat(stream), options.heartbeatMs);
    open.add(shutdown);
    raw.on('close', () => end('end'));
    return stream;
  };
}
