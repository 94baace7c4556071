import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { buffer } from 'node:stream/consumers';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectMissingError } from '../../src/assets/backends/object-store.js';
import { PresignedReads } from '../../src/assets/backends/presigned-reads.js';

const BODY = Buffer.from('0123456789abcdefghij');

/**
 * A stand-in for an object store behind presigned URLs: `/object?v=N` holds BODY (with Range
 * support) when N is at least `validFrom`, else it answers 403; any other path is a 404.
 */
async function fakeStore() {
  const served = new WeakSet<object>();
  const state = { validFrom: 0, status: 0, dropNextReused: false, requests: [] as string[] };
  const server = http.createServer((request, response) => {
    const url = new URL(request.url!, 'http://store');
    state.requests.push(`${url.pathname}${url.search} ${request.headers.range ?? 'whole'}`);
    if (state.dropNextReused && served.has(request.socket)) {
      // closes a kept-alive connection as a request arrives on it, as a store's idle timeout can
      state.dropNextReused = false;
      request.socket.destroy();
      return;
    }
    served.add(request.socket);
    if (state.status) return void response.writeHead(state.status).end('<Error><Endpoint>store.internal</Endpoint></Error>');
    if (url.pathname !== '/object') return void response.writeHead(404).end();
    if (Number(url.searchParams.get('v')) < state.validFrom) return void response.writeHead(403).end();
    const range = /^bytes=(\d+)-(\d+)$/.exec(request.headers.range ?? '');
    if (!range) return void response.writeHead(200, { 'content-length': BODY.length }).end(BODY);
    const part = BODY.subarray(Number(range[1]), Number(range[2]) + 1);
    response.writeHead(206, { 'content-length': part.length, 'content-range': `bytes ${range[1]}-${range[2]}/${BODY.length}` }).end(part);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  let signed = 0;
  const reads = new PresignedReads(async (key) => `${base}/${key}?v=${++signed}`);
  return {
    state,
    reads,
    signed: () => signed,
    close: async () => {
      reads.close();
      server.closeAllConnections();
      server.close();
    },
  };
}

describe('S3 reads by presigned GET', () => {
  const stores: Awaited<ReturnType<typeof fakeStore>>[] = [];
  const start = async () => {
    const store = await fakeStore();
    stores.push(store);
    return store;
  };
  afterEach(async () => {
    await Promise.all(stores.splice(0).map((store) => store.close()));
  });

  it('reads exactly the range asked, or all of it; one signature serves the reads of a key', async () => {
    const { reads, state, signed } = await start();
    expect((await buffer(await reads.open('object', { start: 3, end: 7 }))).toString()).toBe('34567');
    expect((await buffer(await reads.open('object'))).equals(BODY)).toBe(true);
    expect(state.requests).toEqual(['/object?v=1 bytes=3-7', '/object?v=1 whole']);
    expect(signed()).toBe(1);
  });

  it('a missing object is an ObjectMissingError', async () => {
    const { reads } = await start();
    await expect(reads.open('gone', { start: 0, end: 9 })).rejects.toBeInstanceOf(ObjectMissingError);
  });

  it("a reused URL the store refuses is signed afresh once; a fresh URL's refusal is final", async () => {
    const { reads, state, signed } = await start();
    await buffer(await reads.open('object', { start: 0, end: 1 }));
    state.validFrom = 2;
    expect((await buffer(await reads.open('object', { start: 0, end: 1 }))).toString()).toBe('01');
    expect(signed()).toBe(2);
    state.validFrom = 100;
    reads.forget('object');
    await expect(reads.open('object', { start: 0, end: 1 })).rejects.toThrow('object store answered a GET with 403');
    expect(signed()).toBe(3);
  });

  it('a kept-alive connection the store drops as a request arrives is retried once on a new one', async () => {
    const { reads, state } = await start();
    await buffer(await reads.open('object', { start: 0, end: 1 }));
    state.dropNextReused = true;
    expect((await buffer(await reads.open('object', { start: 2, end: 3 }))).toString()).toBe('23');
    expect(state.requests).toEqual(['/object?v=1 bytes=0-1', '/object?v=1 bytes=2-3', '/object?v=1 bytes=2-3']);
  });

  it("another answer is an error naming its status only: no host, no URL, none of the store's body", async () => {
    const { reads, state } = await start();
    state.status = 503;
    const error = await reads.open('object', { start: 0, end: 1 }).catch((caught: Error) => caught);
    expect(error).toBeInstanceOf(Error);
    expect(error).not.toHaveProperty('statusCode');
    expect((error as Error).message).toBe('object store answered a GET with 503');
  });
});
