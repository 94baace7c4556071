import type { FastifyBaseLogger } from 'fastify';
import type { Principal } from '../access/principal.js';
import type { AssetStorage } from '../assets/storage.js';
import type { Auditor } from '../audit/events.js';
import type { Store } from '../db/database.js';
import { conflict, HttpProblem, notFound } from '../http/problem.js';
import type { ApiKeyService } from '../identity/api-keys/service.js';
import { verifyPassword } from '../identity/passwords.js';
import type { IdentityService } from '../identity/service.js';
import { findUserById } from '../identity/store.js';
import { UUID } from '../http/pagination.js';
import type { ProductionService, RequestContext } from '../production/service.js';
import { saveStorageOverride } from '../limits/quota-store.js';
import type { StorageQuota, StorageView } from '../limits/storage-quota.js';
import { deleteAccountRows, deleteJobRows } from './store.js';

export interface LifecycleDeps {
  store: Store;
  storage: AssetStorage;
  audit: Auditor;
  production: ProductionService;
  identity: IdentityService;
  apiKeys: ApiKeyService;
  storageQuota: StorageQuota;
  log: FastifyBaseLogger;
}

/**
 * Removes the objects of deleted rows. A failure is logged, not thrown: the rows are gone, so the
 * objects are orphans now, and the periodic sweep removes them.
 */
export async function removeObjects(storage: AssetStorage, keys: string[], log: FastifyBaseLogger): Promise<void> {
  const results = await Promise.allSettled(keys.map((key) => storage.remove(key)));
  const failed = results.filter((result) => result.status === 'rejected').length;
  if (failed > 0) log.warn({ failed }, 'could not remove some asset objects; the sweep will');
}

/** Storage quotas, and deleting jobs and accounts with everything they own. */
export class LifecycleService {
  constructor(private readonly deps: LifecycleDeps) {}

  storageOf(userId: string): Promise<StorageView> {
    return this.deps.storageQuota.usage(userId);
  }

  /** Refuses a new job while the user's stored results fill the quota. */
  async assertRoomForResults(userId: string): Promise<void> {
    const view = await this.storageOf(userId);
    if (view.used_bytes >= view.limit_bytes) {
      throw new HttpProblem(403, 'quota-storage', `Your results take ${view.used_bytes} bytes; the limit is ${view.limit_bytes}. Delete some jobs to make room.`, {
        title: 'Storage quota reached',
        extensions: { quota: 'storage', limit: view.limit_bytes, used: view.used_bytes },
      });
    }
  }

  async setStorageOverride(actor: Principal, userId: string, bytes: number | null, context: RequestContext): Promise<StorageView> {
    if (!UUID.test(userId) || !(await findUserById(this.deps.store.db, userId))) throw notFound('No such user.');
    await saveStorageOverride(this.deps.store.db, userId, bytes, actor.userId, new Date().toISOString());
    this.#audit('admin.user.storage-quota', actor.userId, userId, context, { storage_bytes: bytes });
    return this.storageOf(userId);
  }

  async storageFor(userId: string): Promise<StorageView> {
    if (!UUID.test(userId) || !(await findUserById(this.deps.store.db, userId))) throw notFound('No such user.');
    return this.storageOf(userId);
  }

  /** Deletes one of the caller's ended jobs with its results, thumbnails and share links, everywhere. */
  async deleteJob(principal: Principal, jobId: string, context: RequestContext): Promise<void> {
    const job = await this.deps.production.ownJob(principal, jobId);
    if (job.status === 'queued' || job.status === 'running') throw conflict('Cancel the job first; a job is deleted once it has ended.');
    const keys = await deleteJobRows(this.deps.store.db, [job.id]);
    await removeObjects(this.deps.storage, keys, this.deps.log);
    this.#audit('job.delete', principal.userId, job.id, context, { assets: keys.length });
  }

  /** The caller deletes their own account: their password again, and a fresh second factor if they use one. */
  async deleteOwnAccount(principal: Principal, password: string, context: RequestContext): Promise<void> {
    const user = await findUserById(this.deps.store.db, principal.userId);
    if (!user) throw notFound();
    if (!(await verifyPassword(user.password_hash, password))) {
      this.#audit('account.delete', principal.userId, principal.userId, context, { reason: 'wrong-password' }, 'denied');
      throw new HttpProblem(403, 'reauthentication-failed', 'The password is not right.');
    }
    if (await this.deps.identity.hasSecondFactor(user)) await this.deps.identity.assertSteppedUp(principal);
    await this.#deleteAccount(principal.userId, principal.userId, context);
  }

  async adminDeleteAccount(actor: Principal, userId: string, context: RequestContext): Promise<void> {
    if (userId === actor.userId) throw conflict('Delete your own account through DELETE /api/auth/account.');
    const user = UUID.test(userId) ? await findUserById(this.deps.store.db, userId) : undefined;
    if (!user || user.password_hash === '!') throw notFound('No such user.');
    await this.#deleteAccount(userId, actor.userId, context);
  }

  async #deleteAccount(userId: string, actorId: string, context: RequestContext): Promise<void> {
    // Sessions end on every instance first (revocation events), so no request of the user runs on.
    const sessions = await this.deps.identity.revokeAllSessions(userId, 'account-deleted');
    const keys = await deleteAccountRows(this.deps.store.db, userId, new Date().toISOString());
    await this.deps.apiKeys.evictUserKeys(userId);
    await removeObjects(this.deps.storage, keys, this.deps.log);
    this.#audit('account.delete', actorId, userId, context, { assets: keys.length, sessions });
  }

  #audit(action: string, actorId: string, target: string, context: RequestContext, detail: Record<string, unknown>, outcome: 'success' | 'denied' = 'success'): void {
    this.deps.audit.record({ action, outcome, actorId, target, ip: context.ip, requestId: context.requestId, detail });
  }
}
