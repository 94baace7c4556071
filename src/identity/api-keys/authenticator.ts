import type { FastifyRequest } from 'fastify';
import type { Principal } from '../../access/principal.js';
import type { Auditor } from '../../audit/events.js';
import { unauthorized, type Authenticator } from '../../access/authentication.js';
import { ApiKeyRefused, type ApiKeyService } from './service.js';

/** `Authorization: ApiKey <key>` and `X-API-Key: <key>`: one answer for every refused key. */
export class ApiKeyAuthenticator implements Authenticator {
  constructor(
    private readonly keys: ApiKeyService,
    private readonly audit: Auditor,
  ) {}

  async authenticate(value: string, request: FastifyRequest): Promise<Principal> {
    try {
      return await this.keys.authenticate(value);
    } catch (error) {
      if (!(error instanceof ApiKeyRefused)) throw error;
      this.audit.record({
        action: 'auth.apikey.use',
        outcome: 'denied',
        target: error.keyId ? `api-key:${error.keyId}` : null,
        ip: request.ip,
        requestId: request.id,
        detail: { reason: error.reason },
      });
      throw unauthorized('The API key is invalid, expired or revoked.');
    }
  }

  known(value: string): Principal | null {
    return this.keys.known(value);
  }
}
