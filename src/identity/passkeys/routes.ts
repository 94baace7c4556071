import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { principalOf } from '../../access/authentication.js';
import { context } from '../routes.js';
import { AssertionBody, AttemptId, CredentialJson } from './credential.js';
import { view, type PasskeyService } from './service.js';

const Name = Type.String({ minLength: 1, maxLength: 64 });
const Uuid = Type.String({ minLength: 36, maxLength: 36, pattern: '^[0-9a-f-]{36}$' });

const Options = Type.Object({
  attempt_id: Type.String({ description: 'names this ceremony when its response is sent; valid once, for 5 minutes' }),
  options: Type.Object({}, { additionalProperties: true, description: 'WebAuthn options (JSON form) for navigator.credentials' }),
});

export const Passkey = Type.Object({
  id: Type.String(),
  name: Type.String(),
  created_at: Type.String(),
  last_used_at: Type.Union([Type.String(), Type.Null()]),
  device_type: Type.Union([Type.Literal('singleDevice'), Type.Literal('multiDevice')]),
  backed_up: Type.Boolean(),
});

const TokenPair = Type.Object({
  access_token: Type.String(),
  token_type: Type.Literal('Bearer'),
  expires_in: Type.Integer(),
  refresh_token: Type.String(),
  session_id: Type.String(),
});

/**
 * `/api/auth/passkeys`: managing one's passkeys (account management: sessions only, never API
 * keys), passwordless sign-in (public, rate-limited as sign-in) and step-up.
 */
export const passkeyRoutes: FastifyPluginAsyncTypebox<{ passkeys: PasskeyService }> = async (app, options) => {
  const { passkeys } = options;
  const signin = { auth: 'public', rateClass: 'signin' } as const;
  const tags = ['identity'];

  app.get('/passkeys', { config: { rateClass: 'read' }, schema: { tags, response: { 200: Type.Object({ items: Type.Array(Passkey) }) } } }, async (request) => ({
    items: (await passkeys.list(principalOf(request).userId)).map(view),
  }));

  app.post(
    '/passkeys/registration/options',
    {
      config: { rateClass: 'write' },
      schema: {
        tags,
        summary: 'Start adding a passkey (the password again)',
        body: Type.Object({ password: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false }),
        response: { 200: Options },
      },
    },
    async (request) => passkeys.registrationOptions(principalOf(request), request.body.password, context(request)),
  );

  app.post(
    '/passkeys/registration',
    {
      config: { rateClass: 'write' },
      schema: {
        tags,
        summary: "Finish adding a passkey with the authenticator's response",
        body: Type.Object({ attempt_id: AttemptId, name: Type.Optional(Name), response: CredentialJson }, { additionalProperties: false }),
        response: { 201: Passkey },
      },
    },
    async (request, reply) => {
      const added = await passkeys.register(principalOf(request), request.body, context(request));
      return reply.code(201).send(added);
    },
  );

  app.patch(
    '/passkeys/:id',
    {
      config: { rateClass: 'write' },
      schema: { tags, params: Type.Object({ id: Uuid }), body: Type.Object({ name: Name }, { additionalProperties: false }), response: { 200: Passkey } },
    },
    async (request) => passkeys.rename(principalOf(request), request.params.id, request.body.name, context(request)),
  );

  app.delete(
    '/passkeys/:id',
    { config: { rateClass: 'write', critical: true }, schema: { tags, params: Type.Object({ id: Uuid }), response: { 204: Type.Null() } } },
    async (request, reply) => {
      await passkeys.remove(principalOf(request), request.params.id, context(request));
      return reply.code(204).send(null);
    },
  );

  app.delete(
    '/users/:id/passkeys',
    {
      config: { role: 'admin', critical: true, rateClass: 'admin', scope: 'admin' },
      schema: { tags: ['admin'], summary: "Remove all of a user's passkeys (a lost device)", params: Type.Object({ id: Uuid }), response: { 200: Type.Object({ removed: Type.Integer() }) } },
    },
    async (request) => ({
      removed: await passkeys.adminRemoveAll(request.params.id, { id: principalOf(request).userId, ctx: context(request) }),
    }),
  );

  app.post(
    '/passkeys/signin/options',
    { config: signin, schema: { tags, summary: 'Start a passwordless sign-in with a discoverable passkey', response: { 200: Options } } },
    async () => passkeys.signInOptions(),
  );

  app.post(
    '/passkeys/signin',
    {
      config: signin,
      schema: {
        tags,
        summary: 'Finish a passkey sign-in: passwordless, or the second factor after a password (`passkey.attempt_id` of the 401)',
        body: AssertionBody,
        response: { 200: TokenPair },
      },
    },
    async (request) => passkeys.signIn(request.body, context(request)),
  );

  app.post(
    '/passkeys/step-up/options',
    { config: { rateClass: 'signin' }, schema: { tags, summary: 'Start a step-up with a passkey (user verification required)', response: { 200: Options } } },
    async (request) => passkeys.stepUpOptions(principalOf(request)),
  );

  app.post(
    '/passkeys/step-up',
    {
      config: { rateClass: 'signin' },
      schema: { tags, summary: 'Step up this session with a passkey', body: AssertionBody, response: { 200: Type.Object({ mfa_at: Type.String(), valid_until: Type.String() }) } },
    },
    async (request) => passkeys.stepUp(principalOf(request), request.body, context(request)),
  );
};
