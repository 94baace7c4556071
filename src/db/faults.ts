/**
 * Which errors mean "the store or the disk cannot do this now" (try again later) rather than "this
 * request or job is wrong". They decide between a 503 and a 500, and between retrying a job's save
 * and failing the job.
 */

/** SQLSTATE classes: connection exception, insufficient resources (disk full, too many connections), operator intervention (shutdown, terminated backend), system error. */
const PG_CLASSES = new Set(['08', '53', '57', '58']);
/** serialization failure, deadlock, lock not available, read-only transaction (a standby after failover) */
const PG_CODES = new Set(['40001', '40P01', '55P03', '25006']);
/** socket errors on the way to the store */
const NET_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);
/** SQLite: lock timeout, disk full, I/O error, read-only file or directory, file cannot be opened */
const SQLITE_PREFIXES = ['SQLITE_BUSY', 'SQLITE_LOCKED', 'SQLITE_FULL', 'SQLITE_IOERR', 'SQLITE_READONLY', 'SQLITE_CANTOPEN', 'SQLITE_PROTOCOL'];
/** what node-postgres says (without a code) when its connection is gone or cannot be made */
const PG_CLIENT_MESSAGES = /Connection terminated|not queryable|timeout exceeded when trying to connect|Connection ended/i;
/** the file system: full, read-only, over quota, failing, out of descriptors */
const FS_CODES = new Set(['ENOSPC', 'EROFS', 'EDQUOT', 'EIO', 'EAGAIN', 'EBUSY', 'EMFILE', 'ENFILE']);

function codeOf(error: unknown): string {
  return error && typeof error === 'object' && 'code' in error ? String((error as { code: unknown }).code) : '';
}

function causes(error: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let current = error; current && chain.length < 5; current = (current as { cause?: unknown }).cause) chain.push(current);
  return chain;
}

function storeUnavailable(error: unknown): boolean {
  const code = codeOf(error);
  if (/^[0-9A-Z]{5}$/.test(code) && (PG_CLASSES.has(code.slice(0, 2)) || PG_CODES.has(code))) return true;
  if (NET_CODES.has(code) || SQLITE_PREFIXES.some((prefix) => code.startsWith(prefix))) return true;
  return error instanceof Error && !code && PG_CLIENT_MESSAGES.test(error.message);
}

/** The store cannot answer or cannot write for now (down, restarting, locked, full, read-only). */
export function isStoreUnavailable(error: unknown): boolean {
  return causes(error).some(storeUnavailable);
}

/** A store fault as above, or a file system one (ENOSPC, EROFS, …): worth trying again later. */
export function isTemporaryFault(error: unknown): boolean {
  return causes(error).some((cause) => storeUnavailable(cause) || FS_CODES.has(codeOf(cause)));
}

/** A short, path-free description for a job's error and the logs: what kind of fault it was. */
export function describeFault(error: unknown): string {
  for (const cause of causes(error)) {
    const code = codeOf(cause);
    if (code === 'ENOSPC' || code === 'EDQUOT' || code === 'SQLITE_FULL' || code === '53100') return 'the storage is full';
    if (code === 'EROFS' || code.startsWith('SQLITE_READONLY') || code === '25006') return 'the storage is read-only';
    if (code.startsWith('SQLITE_BUSY') || code.startsWith('SQLITE_LOCKED') || code === '55P03' || code === '40P01' || code === '40001') {
      return 'the store stayed locked';
    }
  }
  return isStoreUnavailable(error) ? 'the store was unreachable' : 'the storage failed';
}
