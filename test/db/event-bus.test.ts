import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/db/event-bus.js';
import { openRedis } from '../../src/db/redis.js';
import { startTcpProxy, type TcpProxy } from '../support/tcp-proxy.js';

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';

interface Logged {
  details: Record<string, unknown>;
  message: string;
}

function recordingLog() {
  const lines: Logged[] = [];
  return { lines, warn: (details: object, message: string) => void lines.push({ details: details as Record<string, unknown>, message }) };
}

describe('event bus on a real Redis', () => {
  const prefix = `celforge-test-${randomBytes(6).toString('hex')}:`;
  const name = `celforge-test-bus-${randomBytes(6).toString('hex')}`;
  let admin: Redis;
  let proxy: TcpProxy;
  const buses: EventBus[] = [];
  const open = (options: { url?: string; log?: ReturnType<typeof recordingLog> } = {}) => {
    const url = options.url ?? REDIS_URL;
    const bus = new EventBus({ url, publisher: openRedis(url, prefix, options.log), log: options.log, connectionName: name, ownsPublisher: true });
    buses.push(bus);
    return bus;
  };

  beforeAll(async () => {
    admin = new Redis(REDIS_URL);
    proxy = await startTcpProxy('127.0.0.1', 6379);
  });
  afterEach(() => {
    for (const bus of buses.splice(0)) bus.close();
    proxy.restore();
  });
  afterAll(async () => {
    admin.disconnect();
    await proxy.close();
  });

  it('delivers each message on a channel to every handler of it, and none after unsubscribing', async () => {
    const bus = open();
    const channel = `${prefix}greetings`;
    const first: string[] = [];
    const second: string[] = [];
    const unsubscribeFirst = bus.subscribe(channel, (message) => first.push(message));
    bus.subscribe(channel, (message) => second.push(message));
    bus.subscribe(`${prefix}other`, (message) => first.push(`other ${message}`));
    await bus.ready();
    // one subscriber connection for the process, however many subscriptions
    expect(await bus.publish(channel, 'hello')).toBe(1);
    await expect.poll(() => second).toEqual(['hello']);
    expect(first).toEqual(['hello']);
    unsubscribeFirst();
    await bus.publish(channel, 'again');
    await expect.poll(() => second).toEqual(['hello', 'again']);
    expect(first).toEqual(['hello']);
  });

  it('closing with subscriptions still open logs nothing', async () => {
    const log = recordingLog();
    const bus = open({ log });
    const unsubscribe = bus.subscribe(`${prefix}closing`, () => {});
    await bus.ready();
    unsubscribe();
    bus.close();
    await sleep(200);
    expect(log.lines).toEqual([]);
  });

  it('after its connection is killed it subscribes again, resyncs, and only then is live', async () => {
    const bus = open();
    const channel = `${prefix}revocations`;
    const received: string[] = [];
    const states: boolean[] = [];
    let resyncs = 0;
    bus.subscribe(channel, (message) => received.push(message), { onResync: () => void resyncs++, onLive: (live) => states.push(live) });
    await bus.ready();
    expect(resyncs).toBe(1);
    expect(states).toEqual([true]);

    const killed = await admin.client('KILL', 'ID', await clientId(admin, name));
    expect(killed).toBe(1);
    await expect.poll(() => states, { timeout: 5_000 }).toEqual([true, false, true]);
    expect(resyncs).toBe(2);
    await bus.ready();
    // subscribed again on the new connection
    await bus.publish(channel, 'after the reconnect');
    await expect.poll(() => received).toEqual(['after the reconnect']);
  });

  it('a failing resync is logged once with its channel, retried, and the subscription waits for it', async () => {
    const log = recordingLog();
    const bus = open({ log });
    const channel = `${prefix}needs-store`;
    let calls = 0;
    let live = false;
    bus.subscribe(channel, () => {}, {
      onResync: async () => {
        calls++;
        if (calls < 3) throw new Error('store down');
      },
      onLive: (value) => (live = value),
    });
    await bus.ready();
    expect(calls).toBe(3);
    expect(live).toBe(true);
    const failures = log.lines.filter((line) => line.details.channel === channel);
    expect(failures).toHaveLength(1);
    expect(failures[0]!.message).toMatch(/could not subscribe and resync/);
    expect((failures[0]!.details.err as Error).message).toBe('store down');
  });

  it('an outage is logged once however many reconnects fail; publishes failing meanwhile once per channel; a throwing handler once', async () => {
    const log = recordingLog();
    const bus = open({ url: proxy.url(REDIS_URL), log });
    const channel = `${prefix}events`;
    const states: boolean[] = [];
    bus.subscribe(
      channel,
      (message) => {
        throw new Error(`cannot handle ${message}`);
      },
      { onLive: (live) => states.push(live) },
    );
    await bus.ready();

    await bus.publish(channel, 'one');
    await bus.publish(channel, 'two');
    await expect.poll(() => log.lines.filter((line) => line.message.includes('handler failed')).length).toBe(1);
    expect(log.lines.find((line) => line.message.includes('handler failed'))!.details).toMatchObject({ channel, redis: 'event bus' });

    proxy.cut();
    await expect.poll(() => states).toEqual([true, false]);
    await expect(bus.publish(channel, 'lost')).rejects.toThrow();
    await expect(bus.publish(channel, 'lost again')).rejects.toThrow();
    // ioredis retries every few hundred ms at first: several failed reconnects
    await sleep(1_500);
    const outage = log.lines.filter((line) => line.message === 'redis connection failing; retrying');
    expect(outage.map((line) => line.details.redis).sort()).toEqual(['event bus (subscribe)', 'shared']);
    const publishes = log.lines.filter((line) => line.message === 'event bus: could not publish');
    expect(publishes).toHaveLength(1);
    expect(publishes[0]!.details.channel).toBe(channel);

    proxy.restore();
    await expect.poll(() => states, { timeout: 10_000 }).toEqual([true, false, true]);
    // the outage is over: a publish that fails after it is news again
    await expect.poll(() => bus.publish(channel, 'back').then(() => true, () => false), { timeout: 5_000 }).toBe(true);
  });
});

async function clientId(redis: Redis, name: string): Promise<string> {
  const list = (await redis.call('CLIENT', 'LIST', 'TYPE', 'pubsub')) as string;
  const line = list.split('\n').find((entry) => entry.includes(` name=${name} `));
  if (!line) throw new Error(`no pub/sub connection named ${name}`);
  return /(?:^|\s)id=(\d+)/.exec(line)![1]!;
}
