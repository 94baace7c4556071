import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { EventBus } from '../../src/db/event-bus.js';
import { ComfyUIRenderer } from '../../src/renderers/comfyui/renderer.js';
import { RedisSlotLedger } from '../../src/renderers/comfyui/slot-leases.js';
import type { RenderRequest } from '../../src/renderers/renderer.js';
import { startComfyUIDouble, type ComfyUIDouble } from '../doubles/comfyui.js';
import { ROOT } from '../support/cli.js';
import { removeRedisKeys } from '../support/redis.js';
import { testScratchDir } from '../support/scratch.js';

/**
 * Fleets of separate processes (or separate Redis connections) share each backend's places
 * through Redis leases. These fleets run in this process with a connection each, apart from the
 * killed one, which is a process of its own.
 */

const REDIS_URL = process.env.CELFORGE_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `cf-test-${randomBytes(6).toString('hex')}:`;
const redis = new Redis(REDIS_URL);
const doubles: ComfyUIDouble[] = [];
const renderers: ComfyUIRenderer[] = [];
const buses: EventBus[] = [];

afterEach(async () => {
  await Promise.all(renderers.splice(0).map((r) => r.close()));
  for (const bus of buses.splice(0)) bus.close();
  await Promise.all(doubles.splice(0).map((d) => d.close()));
});
afterAll(async () => {
  await removeRedisKeys(REDIS_URL, prefix);
  redis.disconnect();
});

async function comfy(): Promise<ComfyUIDouble> {
  const d = await startComfyUIDouble();
  doubles.push(d);
  return d;
}

/** A worker's fleet: its own ledger and event bus, so its own Redis connections. */
function worker(urls: string[], leaseMs = 60_000, depth = 2): ComfyUIRenderer {
  const bus = EventBus.open(REDIS_URL, prefix);
  buses.push(bus);
  const ledger = new RedisSlotLedger({ url: REDIS_URL, prefix, leaseMs, bus });
  const r = new ComfyUIRenderer({ urls, depths: [depth], ledger, requestTimeoutMs: 1_000, jobTimeoutMs: 15_000, pollIntervalMs: 25, healthIntervalMs: 60_000 });
  renderers.push(r);
  return r;
}

let counter = 0;
function request(): RenderRequest {
  counter++;
  return { jobId: `shared-${counter}`, type: 'image', prompt: `prompt ${counter}`, negativePrompt: '', width: 64, height: 64, seed: counter, steps: 2, frames: 1, fps: 8 };
}

const scratch = testScratchDir();
const context = (signal = new AbortController().signal) => ({ signal, scratchDir: async () => scratch, onProgress: () => {} });
const leasesOn = (d: ComfyUIDouble) => redis.zcard(`${prefix}fleet:slots:${new URL(d.url).href}`);

async function until(condition: () => boolean, timeoutMs = 5_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
}

describe('ComfyUI places shared across workers', () => {
  it('two fleets on the same backends never put more than its depth on one, and every render succeeds', async () => {
    const a = await comfy();
    const b = await comfy();
    a.renderMs = 30;
    b.renderMs = 45;
    const one = worker([a.url, b.url]);
    const two = worker([a.url, b.url]);
    const outputs = await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? one : two).render(request(), context())));
    expect(outputs.every((o) => o.length === 1 && o[0]!.contentType === 'image/png')).toBe(true);
    expect(a.finished.length + b.finished.length).toBe(30);
    expect([a.peakQueue, b.peakQueue]).toEqual([2, 2]);
    await expect.poll(async () => [await leasesOn(a), await leasesOn(b)], { timeout: 1_000 }).toEqual([0, 0]);
  });

  it("one depth for every worker: a worker set deeper keeps to the fleet's depth while others hold places", async () => {
    const a = await comfy();
    a.renderMs = 30;
    const first = worker([a.url], 60_000, 2);
    await first.render(request(), context());
    const deeper = worker([a.url], 60_000, 3);
    const outputs = await Promise.all(Array.from({ length: 16 }, (_, i) => (i % 2 ? first : deeper).render(request(), context())));
    expect(outputs.every((o) => o.length === 1)).toBe(true);
    expect(a.peakQueue).toBe(2);
    expect(deeper.fleetStats().backends[0]!.depth).toBe(2);
  });

  it('a process that renders nothing (the API) sees the prompts in flight of all workers and their render times', async () => {
    const a = await comfy();
    a.renderMs = 30;
    const renderer = worker([a.url]);
    const api = worker([a.url]);
    await renderer.render(request(), context());
    a.hold(true);
    const held = [renderer.render(request(), context()), renderer.render(request(), context())];
    try {
      await until(() => a.pending().length === 2);
      await expect.poll(() => api.fleetStats().backends[0], { timeout: 2_000 }).toMatchObject({ in_flight: 2, in_flight_here: 0 });
      await expect.poll(() => api.fleetStats().backends[0]!.render_ms.image ?? 0, { timeout: 2_000 }).toBeGreaterThan(0);
      expect(renderer.fleetStats().backends[0]).toMatchObject({ in_flight: 2, in_flight_here: 2 });
    } finally {
      a.hold(false);
      await Promise.all(held);
    }
  });

  it('a place freed by one worker is taken by another promptly (announced, not polled)', async () => {
    const d = await comfy();
    d.renderMs = 200;
    const holder = worker([d.url]);
    const waiter = worker([d.url]);
    const held = [holder.render(request(), context()), holder.render(request(), context())];
    await until(() => d.promptCount === 2);
    await expect.poll(() => leasesOn(d)).toBe(2);
    const waiting = waiter.render(request(), context());
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(d.promptCount).toBe(2);
    await until(() => d.promptCount === 3);
    const submittedAt = performance.now();
    const freedAt = d.executions[0]!.endedAt;
    const latency = submittedAt - freedAt;
    console.log(`place handed to the other worker ${latency.toFixed(1)} ms after the backend finished a prompt`);
    // well under the 500 ms poll: the release was announced
    expect(latency).toBeLessThan(300);
    await Promise.all([...held, waiting]);
    expect(d.peakQueue).toBe(2);
  });

  it('a place is given back on failure, cancel and a moved prompt, long before its lease would end', async () => {
    const a = await comfy();
    const b = await comfy();
    const r = worker([a.url, b.url]);
    const other = worker([a.url, b.url]);

    a.mode = 'fail';
    b.mode = 'fail';
    await expect(r.render(request(), context())).rejects.toThrow();
    await expect.poll(async () => (await leasesOn(a)) + (await leasesOn(b)), { timeout: 1_000 }).toBe(0);
    a.mode = 'normal';
    b.mode = 'normal';

    a.hold(true);
    b.hold(true);
    const cancel = new AbortController();
    const canceled = r.render(request(), context(cancel.signal));
    await until(() => a.pending().length + b.pending().length === 1);
    expect((await leasesOn(a)) + (await leasesOn(b))).toBe(1);
    cancel.abort();
    await expect(canceled).rejects.toThrow();
    await expect.poll(async () => (await leasesOn(a)) + (await leasesOn(b)), { timeout: 1_000 }).toBe(0);
    a.hold(false);
    b.hold(false);

    // Work stealing: r's prompts wait on a stuck backend; when b frees up, one moves there.
    b.renderMs = 150;
    await Promise.all([r.render(request(), context()), r.render(request(), context())]);
    a.hold(true);
    const renders = Array.from({ length: 4 }, () => r.render(request(), context()));
    await until(() => a.deletes.length > 0, 5_000);
    a.hold(false);
    await Promise.all(renders);
    // and the other worker still gets places: nothing was left behind
    await other.render(request(), context());
    await expect.poll(async () => [await leasesOn(a), await leasesOn(b)], { timeout: 1_000 }).toEqual([0, 0]);
    expect(a.peakQueue).toBeLessThanOrEqual(2);
    expect(b.peakQueue).toBeLessThanOrEqual(2);
  });

  it('a live worker takes its leases again when Redis lost them', async () => {
    const d = await comfy();
    d.hold(true);
    const r = worker([d.url], 600);
    const renders = [r.render(request(), context()), r.render(request(), context())];
    await until(() => d.promptCount === 2);
    await expect.poll(() => leasesOn(d)).toBe(2);
    await redis.del(`${prefix}fleet:slots:${new URL(d.url).href}`);
    expect(await leasesOn(d)).toBe(0);
    // renewed every third of the lease
    await expect.poll(() => leasesOn(d), { timeout: 1_000, interval: 20 }).toBe(2);
    d.hold(false);
    await Promise.all(renders);
    await expect.poll(() => leasesOn(d), { timeout: 1_000 }).toBe(0);
  });

  it("a killed worker's places come back when their leases run out", { timeout: 20_000 }, async () => {
    const d = await comfy();
    d.renderMs = 50;
    // its prompts wait until it is killed: however slow the machine, it holds both places when it says so
    d.hold(true);
    const leaseMs = 1_500;
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/renderers/fixtures/slot-holder.ts'], {
      cwd: ROOT,
      env: { ...process.env, REDIS_URL, PREFIX: prefix, LEASE_MS: String(leaseMs), URL: d.url, DEPTH: '2', COUNT: '2' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await until(() => output.includes('placed'), 15_000).catch(() => {
        throw new Error(`the slot holder did not say it holds its places; it printed: ${output.slice(0, 2000)}`);
      });
    } finally {
      child.kill('SIGKILL');
    }
    await exited;
    const killedAt = performance.now();
    d.hold(false);
    expect(await leasesOn(d)).toBe(2);
    // Whatever it had sent finishes on the GPU; nobody gives its places back.
    await until(() => d.pending().length === 0 && d.running() === undefined);
    expect(await leasesOn(d)).toBe(2);
    const sent = d.promptCount;

    const survivor = worker([d.url], leaseMs);
    const rendered = survivor.render(request(), context());
    await until(() => d.promptCount === sent + 1, 5_000);
    const waited = performance.now() - killedAt;
    console.log(`a killed worker's place came back ${waited.toFixed(0)} ms after the kill (lease ${leaseMs} ms)`);
    // Leases are renewed every third of their length, so they end between 2/3 and all of it after the kill.
    expect(waited).toBeGreaterThanOrEqual((leaseMs * 2) / 3 - 50);
    expect(waited).toBeLessThan(leaseMs + 1_500);
    expect((await rendered)[0]!.contentType).toBe('image/png');
    expect(d.peakQueue).toBeLessThanOrEqual(2);
    await expect.poll(() => leasesOn(d), { timeout: 1_000 }).toBe(0);
  });
});
