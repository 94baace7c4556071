import type { FastifyBaseLogger } from 'fastify';
import type { AuditEvent, Auditor } from './events.js';

/** Writes security events to the service log; the hash-chained store trail replaces it. */
export class LogAuditor implements Auditor {
  constructor(private readonly log: FastifyBaseLogger) {}

  record(event: AuditEvent): void {
    this.log.info({ audit: event }, event.action);
  }

  async flush(): Promise<void> {}
}
