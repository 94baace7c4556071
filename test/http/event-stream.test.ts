import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { setImmediate as turn } from 'node:timers/promises';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import { eventStreams, type EventStream } from '../../src/http/event-stream.js';

const HOUR_MS = 3_600_000;

/** A server with one event stream at /events; `opened` settles with the stream of the first request. */
async function serve() {
  const app = Fastify();
  const openEventStream = eventStreams(app);
  let resolve!: (stream: EventStream) => void;
  const opened = new Promise<EventStream>((r) => (resolve = r));
  app.get('/events', async (request, reply) => {
    resolve(openEventStream(request, reply, { heartbeatMs: HOUR_MS }));
  });
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, opened, port: (app.server.address() as AddressInfo).port };
}

let close: (() => Promise<void>) | undefined;
afterEach(async () => {
  await close?.();
  close = undefined;
});

describe('event streams', () => {
  it('hand the route the Last-Event-ID the client reconnected with', async () => {
    const { app, opened, port } = await serve();
    close = () => app.close();
    const socket = net.connect(port, '127.0.0.1');
    socket.write('GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\nLast-Event-ID: 41\r\n\r\n');
    const stream = await opened;
    expect(stream.lastEventId).toBe('41');
    stream.send('status', { n: 1 });
    const [head] = await once(socket, 'data');
    expect(String(head)).toMatch(/content-type: text\/event-stream; charset=utf-8/i);
    socket.destroy();
  });

  it('drop a client that stops reading instead of holding what it leaves unread', async () => {
    const { app, opened, port } = await serve();
    close = () => app.close();
    const socket = net.connect(port, '127.0.0.1');
    socket.write('GET /events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n');
    socket.pause();
    socket.on('error', () => {});
    const stream = await opened;
    const event = { data: 'x'.repeat(64 * 1024) };
    let sent = 0;
    // 64 MiB is far beyond what the sockets' buffers hold for a client that reads nothing
    while (stream.isOpen && sent < 1024) {
      stream.send('frame', event);
      sent += 1;
      await turn();
    }
    expect(stream.isOpen).toBe(false);
    expect(sent).toBeLessThan(1024);
    socket.destroy();
  });
});
