import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { Type, type Static } from 'typebox';

const Base64Url = Type.String({ maxLength: 16_384, pattern: '^[A-Za-z0-9_-]*={0,2}$' });
export const AttemptId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9_-]+$' });

/** A credential as `PublicKeyCredential.toJSON()` (or @simplewebauthn/browser) gives it. */
export const CredentialJson = Type.Object(
  {
    id: Base64Url,
    rawId: Base64Url,
    type: Type.Literal('public-key'),
    response: Type.Object(
      {
        clientDataJSON: Base64Url,
        attestationObject: Type.Optional(Base64Url),
        authenticatorData: Type.Optional(Base64Url),
        signature: Type.Optional(Base64Url),
        userHandle: Type.Optional(Base64Url),
        publicKey: Type.Optional(Base64Url),
        publicKeyAlgorithm: Type.Optional(Type.Integer()),
        transports: Type.Optional(Type.Array(Type.String({ maxLength: 32 }), { maxItems: 10 })),
      },
      { additionalProperties: false },
    ),
    clientExtensionResults: Type.Object({}, { additionalProperties: true }),
    authenticatorAttachment: Type.Optional(Type.String({ maxLength: 32 })),
  },
  { additionalProperties: false },
);
export type CredentialJson = Static<typeof CredentialJson>;

export const AssertionBody = Type.Object({ attempt_id: AttemptId, response: CredentialJson }, { additionalProperties: false });
export type Assertion = Static<typeof AssertionBody>;

/*
 * The schema checks a credential's shape and sizes; its meaning (types of the authenticator's
 * answer, signatures) is the WebAuthn library's to check, so the JSON is handed over as its type.
 */
export const asRegistration = (json: CredentialJson) => json as unknown as RegistrationResponseJSON;
export const asAuthentication = (json: CredentialJson) => json as unknown as AuthenticationResponseJSON;
