import { randomUUID } from 'node:crypto';
import type WebSocket from 'ws';
import { RendererError, type BackendStats, type FleetStats, type JobType } from '../renderer.js';
import { ComfyUIClient, MESSAGES, type ClientOptions } from './client.js';
import type { SlotCount, SlotLedger } from './slot-leases.js';

/**
 * The ComfyUI fleet of one Celforge process: which backend runs which prompt. Every healthy backend
 * is kept `depth` prompts deep (default: one running, one waiting), so its GPU never waits for
 * Celforge between prompts; a prompt that has not started moves to a backend that frees up first
 * (work stealing); a job goes only to a backend whose /object_info has its nodes and checkpoint.
 * With a shared ledger (scale-out), every place on a backend is also a lease in Redis, so the depth
 * holds across all workers, not only within this process.
 */

export const DEFAULT_DEPTH = 2;
export const NO_BACKEND_CAN = 'no renderer can run this job (its model or nodes are not installed)';

/** What a backend can run, from GET /object_info. */
export interface Capabilities {
  nodes: Set<string>;
  checkpoints: Set<string>;
}

/** What a job needs: the node types of its workflow and the checkpoint it loads. */
export interface Requirement {
  kind: JobType;
  nodes: string[];
  checkpoint: string;
}

/** A render as the fleet sees it. */
export interface FleetRun {
  readonly requirement: Requirement;
  /** may take one place beyond `depth`, queued in front of the waiting prompts */
  readonly urgent: boolean;
  /** when its prompt began executing on its backend (Date.now()); undefined while it waits */
  readonly startedAt: number | undefined;
  /** takes the prompt back from its backend and submits it to `target`; false if it had started meanwhile */
  moveTo(target: FleetBackend): Promise<boolean>;
}

const GAP_SAMPLES = 512;
/** A pause longer than this between prompts is the fleet running dry, not a scheduling gap. */
const GAP_CAP_MS = 5_000;
/** /object_info is re-read every this many probes (it changes only when models or nodes are added). */
const CAPABILITY_EVERY = 20;
/** A dropped queue watch is reopened after this long. */
const WATCH_RETRY_MS = 1_000;
/**
 * Shared place counts are re-read this often: the safety net behind the change announcements, and
 * how the places of a crashed worker come back once their leases expire.
 */
const SHARED_POLL_MS = 500;

export class FleetBackend {
  ok: boolean | undefined = undefined;
  capabilities: Capabilities | undefined;
  /** runs holding a slot: submitted (or being submitted) and not finished executing */
  readonly slots = new Set<FleetRun>();
  /** running + pending prompts at the last probe (all clients, not only this process) */
  queue = 0;
  /**
   * running + pending prompts as ComfyUI last announced them to every client (`status` events):
   * prompts other Celforge workers keep there count against `depth` too. Undefined while unknown.
   */
  remoteQueue: number | undefined;
  /** places held on this backend by all workers, as the shared ledger last reported (scale-out) */
  shared: SlotCount | undefined;
  /** this process's lease token per run holding a place here (scale-out) */
  readonly leases = new Map<FleetRun, string>();
  #watch: WebSocket | undefined;
  #watchTimer: NodeJS.Timeout | undefined;
  #closed = false;
  /** per job kind: mean execution time of recent prompts here (exponentially weighted), ms */
  readonly renderMs = new Map<JobType, number>();
  /** per job kind: the mean other workers recorded (scale-out), for kinds not measured here */
  sharedRenderMs = new Map<JobType, number>();
  /** told of each new mean (scale-out: recorded for every process) */
  onRenderMs: ((kind: JobType, ms: number) => void) | undefined;
  #busySince: number | undefined;
  #executing = 0;
  #busyTotal = 0;
  #lastEnd: number | undefined;
  readonly #gaps: number[] = [];
  #probes = 0;
  readonly #createdAt = Date.now();

  /** the depth every worker keeps here (scale-out: the first live worker's setting, from the ledger) */
  fleetDepth: number | undefined;

  constructor(
    readonly id: string,
    /** names the backend to every worker (the ledger's key) */
    readonly url: string,
    readonly client: ComfyUIClient,
    /** this process's setting (CELFORGE_COMFYUI_DEPTH) */
    readonly ownDepth: number,
  ) {}

  /** prompts this backend is kept deep: the fleet's depth when shared, else this process's */
  get depth(): number {
    return this.fleetDepth ?? this.ownDepth;
  }

  get healthy(): boolean {
    return this.ok !== false;
  }

  get free(): number {
    return this.healthy ? Math.max(0, this.depth - Math.max(this.slots.size, this.remoteQueue ?? 0, this.shared?.held ?? 0)) : 0;
  }

  /**
   * Takes a newer shared count (a report of a change already known is ignored); a fresh read is
   * always taken, so counts recover after Redis lost its data. True when the count changed.
   */
  learn(count: SlotCount, fresh = false): boolean {
    if (count.depth !== undefined) this.fleetDepth = count.depth;
    if (!fresh && this.shared && count.version <= this.shared.version) return false;
    const changed = this.shared?.held !== count.held;
    this.shared = count;
    return changed;
  }

  /** Follows ComfyUI's queue size through a WebSocket of its own; `changed` is told of every change. */
  watchQueue(changed: () => void): void {
    if (this.#closed || this.#watch) return;
    const retry = (): void => {
      this.#watch = undefined;
      this.remoteQueue = undefined;
      if (this.#closed) return;
      this.#watchTimer = setTimeout(() => this.watchQueue(changed), WATCH_RETRY_MS);
      this.#watchTimer.unref();
    };
    this.client.openSocket(`celforge-fleet-${randomUUID()}`).then(
      (ws) => {
        if (!ws) return retry();
        if (this.#closed) return void ws.terminate();
        this.#watch = ws;
        ws.on('message', (data, isBinary) => {
          if (isBinary) return;
          const remaining = queueRemaining(data);
          if (remaining === undefined || remaining === this.remoteQueue) return;
          this.remoteQueue = remaining;
          changed();
        });
        ws.once('close', () => {
          retry();
          changed();
        });
      },
      () => retry(),
    );
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#watchTimer);
    this.#watch?.terminate();
    this.#watch = undefined;
  }

  can(requirement: Requirement): boolean | undefined {
    const caps = this.capabilities;
    if (!caps) return undefined;
    return caps.checkpoints.has(requirement.checkpoint) && requirement.nodes.every((node) => caps.nodes.has(node));
  }

  /** expected milliseconds a prompt of `kind` takes here (unknown: the fleet's guess) */
  expectedMs(kind: JobType, fallback: number): number {
    return this.measuredMs(kind) ?? fallback;
  }

  measuredMs(kind: JobType): number | undefined {
    return this.renderMs.get(kind) ?? this.sharedRenderMs.get(kind);
  }

  executionStarted(at = Date.now()): void {
    if (this.#executing++ === 0) {
      this.#busySince = at;
      if (this.#lastEnd !== undefined) {
        const gap = at - this.#lastEnd;
        if (gap <= GAP_CAP_MS) {
          this.#gaps.push(gap);
          if (this.#gaps.length > GAP_SAMPLES) this.#gaps.shift();
        }
      }
    }
  }

  executionEnded(kind: JobType, ms: number | undefined, at = Date.now()): void {
    if (this.#executing === 0) return;
    if (--this.#executing === 0 && this.#busySince !== undefined) {
      this.#busyTotal += at - this.#busySince;
      this.#busySince = undefined;
      this.#lastEnd = at;
    }
    if (ms !== undefined && ms >= 0) {
      const before = this.renderMs.get(kind);
      const mean = before === undefined ? ms : before * 0.8 + ms * 0.2;
      this.renderMs.set(kind, mean);
      this.onRenderMs?.(kind, mean);
    }
  }

  stats(now = Date.now()): BackendStats {
    const busy = this.#busyTotal + (this.#busySince !== undefined ? now - this.#busySince : 0);
    const gaps = [...this.#gaps].sort((a, b) => a - b);
    return {
      id: this.id,
      ok: this.healthy,
      depth: this.depth,
      in_flight: this.shared?.held ?? this.slots.size,
      in_flight_here: this.slots.size,
      utilization: Math.min(1, busy / Math.max(1, now - this.#createdAt)),
      idle_gap_ms: { count: gaps.length, p50: percentile(gaps, 0.5), p99: percentile(gaps, 0.99) },
      render_ms: Object.fromEntries([...this.sharedRenderMs, ...this.renderMs]),
    };
  }

  async probe(): Promise<void> {
    try {
      const queue = await this.client.queue();
      this.queue = queue.running.length + queue.pending.length;
      if (!this.capabilities || this.#probes % CAPABILITY_EVERY === 0) this.capabilities = parseObjectInfo(await this.client.objectInfo());
      this.#probes++;
      this.ok = true;
    } catch {
      this.ok = false;
    }
  }
}

interface Waiter {
  run: FleetRun;
  signal: AbortSignal;
  /** arrival order, kept when a waiter goes back after a refused reservation */
  seq: number;
  resolve: (backend: FleetBackend) => void;
  reject: (err: unknown) => void;
}

export interface FleetOptions {
  urls: string[];
  /** per URL; one value applies to all; default 2 */
  depths?: number[];
  client: ClientOptions;
  /** places shared with other workers (scale-out); without one, this process's accounting is the whole truth */
  ledger?: SlotLedger;
}

export class Fleet {
  readonly backends: FleetBackend[];
  readonly #waiting: Waiter[] = [];
  /** when each run got its slot */
  readonly #placedAt = new WeakMap<FleetRun, number>();
  /** runs whose prompt could not be moved (it had started, or was being moved already) */
  readonly #unmovable = new WeakSet<FleetRun>();
  readonly #listeners: (() => void)[] = [];
  #probing: Promise<void> | undefined;
  #turn = 0;
  #seq = 0;
  readonly #ledger: SlotLedger | undefined;
  #sharedTimer: NodeJS.Timeout | undefined;

  constructor(options: FleetOptions) {
    this.backends = options.urls.map((url, index) => {
      const depth = options.depths?.[options.depths.length === 1 ? 0 : index] ?? DEFAULT_DEPTH;
      // Every worker names a backend alike, however its URL was written.
      return new FleetBackend(String(index), new URL(url).href, new ComfyUIClient(url, options.client), depth);
    });
    this.#ledger = options.ledger;
    if (this.#ledger) {
      const ledger = this.#ledger;
      for (const backend of this.backends) backend.onRenderMs = (kind, ms) => void ledger.recordRenderMs(backend.url, kind, ms).catch(() => undefined);
      this.#ledger.onChange((url, count) => {
        const backend = this.backends.find((b) => b.url === url);
        if (backend?.learn(count)) this.#changed();
      });
      this.#sharedTimer = setInterval(() => void this.#readShared(), SHARED_POLL_MS);
      this.#sharedTimer.unref();
      void this.#readShared();
    }
  }

  /** Jobs the fleet can take now without one waiting: free slots of healthy backends, less runs already waiting. */
  freeSlots(): number {
    return this.backends.reduce((sum, b) => sum + b.free, 0) - this.#waiting.filter((w) => !w.run.urgent).length;
  }

  /** Urgent jobs it can take now: one per healthy backend that holds none. */
  urgentSlots(): number {
    const held = this.backends.filter((b) => b.healthy && ![...b.slots].some((run) => run.urgent)).length;
    return held - this.#waiting.filter((w) => w.run.urgent).length;
  }

  onCapacity(listener: () => void): void {
    this.#listeners.push(listener);
  }

  /**
   * A backend slot for the run: at once when a capable backend has one free, else when one frees
   * up. Fails at once when no backend can run it (non-retryable) or none that can is healthy.
   */
  acquire(run: FleetRun, signal: AbortSignal): Promise<FleetBackend> {
    return new Promise<FleetBackend>((resolve, reject) => {
      const waiter: Waiter = {
        run,
        signal,
        seq: this.#seq++,
        resolve: (backend) => {
          signal.removeEventListener('abort', onAbort);
          resolve(backend);
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      };
      const onAbort = (): void => {
        this.#drop(waiter);
        reject(signal.reason);
      };
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      // Counted at once, so the worker sees the slot taken before any await.
      this.#waiting.push(waiter);
      void this.#place(waiter);
    });
  }

  async #place(waiter: Waiter): Promise<void> {
    if (this.backends.some((b) => b.healthy && b.capabilities === undefined)) await this.probe();
    if (!this.#waiting.includes(waiter)) return;
    const requirement = waiter.run.requirement;
    if (this.backends.every((b) => b.can(requirement) === false)) {
      this.#drop(waiter);
      return waiter.reject(new RendererError(NO_BACKEND_CAN, false, { cause: new Error(`needs ${requirement.checkpoint} and ${requirement.nodes.join(', ')}`) }));
    }
    if (!this.backends.some((b) => b.healthy && b.can(requirement) !== false)) {
      this.#drop(waiter);
      return waiter.reject(new RendererError(MESSAGES.unavailable, true, { cause: new Error('no healthy backend can run this job') }));
    }
    this.#dispatch();
  }

  /** Gives free slots to waiting runs, oldest first, each on the capable backend expected to start it soonest. */
  #dispatch(): void {
    for (const waiter of [...this.#waiting]) {
      const backend = waiter.run.urgent ? this.#soonest(waiter.run.requirement) : this.#bestFree(waiter.run.requirement);
      if (!backend) continue;
      this.#drop(waiter);
      backend.slots.add(waiter.run);
      this.#placedAt.set(waiter.run, Date.now());
      if (this.#ledger) void this.#reserve(waiter, backend, this.#ledger);
      else waiter.resolve(backend);
    }
  }

  /**
   * Scale-out: the place chosen here must also be free across all workers. Refused (another worker
   * took it first) or Redis unreachable, the run goes back to its turn among the waiting ones and
   * the backend counts as full until the ledger says otherwise.
   */
  async #reserve(waiter: Waiter, backend: FleetBackend, ledger: SlotLedger): Promise<void> {
    const token = randomUUID();
    let ok = false;
    try {
      const result = await ledger.reserve(backend.url, token, backend.ownDepth, waiter.run.urgent);
      backend.learn(result);
      ok = result.ok;
    } catch {
      backend.shared = { held: backend.depth + 1, version: backend.shared?.version ?? 0 };
    }
    if (ok && !waiter.signal.aborted) {
      backend.leases.set(waiter.run, token);
      return waiter.resolve(backend);
    }
    backend.slots.delete(waiter.run);
    if (ok) void ledger.release(backend.url, token).catch(() => undefined);
    if (!waiter.signal.aborted) {
      const at = this.#waiting.findIndex((w) => w.seq > waiter.seq);
      this.#waiting.splice(at < 0 ? this.#waiting.length : at, 0, waiter);
    }
    this.#changed();
  }

  /** Frees the run's place on the backend, and its lease; false if it held none. */
  #vacate(run: FleetRun, backend: FleetBackend): boolean {
    if (!backend.slots.delete(run)) return false;
    const token = backend.leases.get(run);
    if (token === undefined || !this.#ledger) return true;
    backend.leases.delete(run);
    // Counted free at once, so this release can start the next prompt (Redis still has the last word).
    if (backend.shared) backend.shared = { ...backend.shared, held: Math.max(0, backend.shared.held - 1) };
    // Unreachable Redis: the lease runs out on its own.
    this.#ledger.release(backend.url, token).then(
      (count) => {
        if (backend.learn(count)) this.#changed();
      },
      () => undefined,
    );
    return true;
  }

  /** Re-reads the shared counts of every backend. */
  async #readShared(): Promise<void> {
    if (!this.#ledger) return;
    try {
      const urls = this.backends.map((b) => b.url);
      const [counts, times] = await Promise.all([this.#ledger.count(urls), this.#ledger.renderTimes(urls)]);
      times.forEach((kinds, i) => {
        this.backends[i]!.sharedRenderMs = new Map(Object.entries(kinds) as [JobType, number][]);
      });
      let changed = false;
      counts.forEach((count, i) => {
        if (this.backends[i]!.learn(count, true)) changed = true;
      });
      if (changed) this.#changed();
    } catch {
      // Redis unreachable: nothing new is placed on the strength of an old count (see #reserve).
    }
  }

  #changed(): void {
    this.#dispatch();
    this.#notify();
  }

  #bestFree(requirement: Requirement): FleetBackend | undefined {
    const n = this.backends.length;
    const turn = this.#turn++ % n;
    const fallback = this.#typicalMs(requirement.kind);
    let best: FleetBackend | undefined;
    let bestKey: number[] = [];
    for (const b of this.backends) {
      if (b.free === 0 || b.can(requirement) === false) continue;
      // Fewest prompts ahead, weighted by how fast the backend is; ties in turn.
      const key = [b.slots.size * b.expectedMs(requirement.kind, fallback) + b.expectedMs(requirement.kind, fallback), (Number(b.id) - turn + n) % n];
      if (!best || compareTuples(key, bestKey) < 0) {
        best = b;
        bestKey = key;
      }
    }
    return best;
  }

  /** For an urgent run: the capable backend without one whose running prompt ends soonest. */
  #soonest(requirement: Requirement): FleetBackend | undefined {
    const now = Date.now();
    const fallback = this.#typicalMs(requirement.kind);
    let best: FleetBackend | undefined;
    let bestKey: number[] = [];
    for (const b of this.backends) {
      if (!b.healthy || b.can(requirement) === false || b.slots.size > b.depth || (b.shared?.held ?? 0) > b.depth || [...b.slots].some((run) => run.urgent)) continue;
      const key = [b.free > 0 && b.slots.size === 0 ? 0 : this.#busyFor(b, fallback, now), b.slots.size];
      if (!best || compareTuples(key, bestKey) < 0) {
        best = b;
        bestKey = key;
      }
    }
    return best;
  }

  #typicalMs(kind: JobType): number {
    const known = this.backends.flatMap((b) => b.measuredMs(kind) ?? []);
    return known.length > 0 ? Math.min(...known) : 1000;
  }

  #drop(waiter: Waiter): void {
    const at = this.#waiting.indexOf(waiter);
    if (at >= 0) this.#waiting.splice(at, 1);
  }

  /**
   * The run's prompt finished executing (or the run ended): its slot goes to the next one. With a
   * worker listening for capacity, the free slot is its to fill from the queue first: a prompt
   * moved here now would leave its old backend without a next prompt (an idle GPU) while jobs
   * still wait in the store. The worker calls `rebalance()` when it finds none.
   */
  release(run: FleetRun, backend: FleetBackend): void {
    if (!this.#vacate(run, backend)) return;
    this.#dispatch();
    if (this.#listeners.length === 0) this.rebalance();
    this.#notify();
  }

  /** Nothing more to start: prompts that have not started move to backends with a free slot where they finish sooner. */
  rebalance(): void {
    if (this.#waiting.length > 0) return;
    for (const backend of this.backends) if (backend.free > 0) void this.#steal(backend);
  }

  /** A backend could not be reached: no new prompt goes there until a probe finds it again. */
  markDown(backend: FleetBackend): void {
    backend.ok = false;
  }

  /**
   * `target` has a free slot and nothing waits for one: take a prompt that has not started on a
   * backend where it would finish later than here, and run it here instead.
   */
  async #steal(target: FleetBackend): Promise<void> {
    const now = Date.now();
    let victim: FleetRun | undefined;
    let gain = 0;
    for (const source of this.backends) {
      if (source === target) continue;
      const waiting = [...source.slots].filter((run) => run.startedAt === undefined && !run.urgent && !this.#unmovable.has(run));
      const last = waiting.at(-1);
      if (!last || target.can(last.requirement) === false) continue;
      // The last waiting prompt there ends after what runs there and every prompt ahead of it.
      const kind = last.requirement.kind;
      const fallback = this.#typicalMs(kind);
      const thereEnds = this.#busyFor(source, fallback, now) + waiting.length * source.expectedMs(kind, fallback);
      const hereEnds = this.#busyFor(target, fallback, now) + ([...target.slots].filter((run) => run.startedAt === undefined).length + 1) * target.expectedMs(kind, fallback);
      // A move costs a delete and a new submission: worth it only to finish at least half a render sooner.
      if (thereEnds - hereEnds > Math.max(gain, target.expectedMs(kind, fallback) / 2)) {
        gain = thereEnds - hereEnds;
        victim = last;
      }
    }
    if (!victim) return;
    target.slots.add(victim); // held while the move is tried
    this.#placedAt.set(victim, Date.now());
    if (this.#ledger) {
      const token = randomUUID();
      const reserved = await this.#ledger.reserve(target.url, token, target.ownDepth, victim.urgent).catch(() => undefined);
      if (reserved) target.learn(reserved);
      if (!reserved?.ok) {
        target.slots.delete(victim);
        return this.#dispatch();
      }
      target.leases.set(victim, token);
    }
    let moved = false;
    try {
      moved = await victim.moveTo(target);
    } catch {
      moved = false;
    }
    if (!moved) {
      // Not tried again: a refused move must not turn into a loop of the worker's `rebalance()` calls.
      this.#unmovable.add(victim);
      this.#vacate(victim, target);
      this.#dispatch();
    }
  }

  /**
   * How long what executes on a backend is expected to go on: a prompt past its mean, as long again
   * as it ran; nothing of ours started though some wait (another client's prompt runs, or the
   * backend is stuck), as long again as the oldest has waited.
   */
  #busyFor(backend: FleetBackend, fallback: number, now: number): number {
    let longest = 0;
    let oldestWait = 0;
    let started = false;
    for (const run of backend.slots) {
      if (run.startedAt === undefined) {
        oldestWait = Math.max(oldestWait, now - (this.#placedAt.get(run) ?? now));
        continue;
      }
      started = true;
      const elapsed = now - run.startedAt;
      const expected = backend.expectedMs(run.requirement.kind, fallback);
      longest = Math.max(longest, elapsed < expected ? expected - elapsed : elapsed);
    }
    return started ? longest : oldestWait;
  }

  /** Called by a run whose prompt moved: its old slot is freed (the new one was held by #steal). */
  moved(run: FleetRun, from: FleetBackend): void {
    this.#vacate(run, from);
    this.#dispatch();
    this.#notify();
  }

  #notify(): void {
    if (this.freeSlots() <= 0) return;
    for (const listener of this.#listeners) {
      try {
        listener();
      } catch {
        // a listener's fault is its own
      }
    }
  }

  /** Probes every backend (GET /queue, and /object_info now and then); concurrent callers share one round. */
  probe(): Promise<void> {
    this.#probing ??= Promise.all(this.backends.map((b) => b.probe())).then(() => {
      this.#probing = undefined;
      this.#dispatch();
      this.#notify();
    });
    return this.#probing;
  }

  /** Starts following every backend's queue (prompts of other workers count against depth). */
  watchQueues(): void {
    for (const backend of this.backends) {
      backend.watchQueue(() => {
        this.#dispatch();
        this.#notify();
      });
    }
  }

  async close(): Promise<void> {
    clearInterval(this.#sharedTimer);
    for (const backend of this.backends) backend.close();
    await this.#ledger?.close();
  }

  /**
   * ETA of a job of `kind` that starts after jobs of the kinds `ahead` (still to be placed): each
   * takes the fleet 1 / (sum over healthy backends of 1 / its measured render time of that kind),
   * after what already waits on the backends and in this process.
   */
  etaMs(ahead: JobType[], kind: JobType): number | undefined {
    const healthy = this.backends.filter((b) => b.healthy);
    if (healthy.length === 0) return undefined;
    const each = (k: JobType): number => {
      const fallback = this.#typicalMs(k);
      return 1 / healthy.reduce((sum, b) => sum + 1 / b.expectedMs(k, fallback), 0);
    };
    const placed = healthy.reduce((sum, b) => sum + Math.max(0, b.slots.size - 1), 0) + this.#waiting.length;
    const work = ahead.reduce((sum, k) => sum + each(k), 0) + (placed + 1) * each(kind);
    return Math.round(work);
  }

  stats(): FleetStats {
    const now = Date.now();
    return { waiting: this.#waiting.length, backends: this.backends.map((b) => b.stats(now)) };
  }
}

/** `queue_remaining` of a ComfyUI `status` event, if the message is one. */
function queueRemaining(data: WebSocket.RawData): number | undefined {
  try {
    const text = Array.isArray(data) ? Buffer.concat(data).toString('utf8') : data.toString('utf8');
    const event = JSON.parse(text) as { type?: unknown; data?: { status?: { exec_info?: { queue_remaining?: unknown } } } };
    const remaining = event.type === 'status' ? event.data?.status?.exec_info?.queue_remaining : undefined;
    return typeof remaining === 'number' && Number.isInteger(remaining) && remaining >= 0 ? remaining : undefined;
  } catch {
    return undefined;
  }
}

/** The node classes and checkpoints of an /object_info answer. */
export function parseObjectInfo(info: Record<string, unknown>): Capabilities {
  const nodes = new Set(Object.keys(info));
  const checkpoints = new Set<string>();
  const loader = info.CheckpointLoaderSimple as { input?: { required?: { ckpt_name?: unknown } } } | undefined;
  const spec = loader?.input?.required?.ckpt_name;
  // ["a.safetensors", ...] as the first element, optionally followed by an options object.
  const list = Array.isArray(spec) ? spec[0] : undefined;
  if (Array.isArray(list)) for (const name of list) if (typeof name === 'string') checkpoints.add(name);
  return { nodes, checkpoints };
}

function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!;
}

function compareTuples(a: number[], b: number[]): number {
  for (let i = 0; i < a.length; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
