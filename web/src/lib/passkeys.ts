import {
  browserSupportsWebAuthn,
  browserSupportsWebAuthnAutofill,
  startAuthentication,
  startRegistration,
  WebAuthnAbortService,
  type PublicKeyCredentialCreationOptionsJSON,
  type PublicKeyCredentialRequestOptionsJSON,
} from '@simplewebauthn/browser';
import type { Problem } from '@celforge/client';
import { api, signInWithPasskeyAssertion, type SignInResult } from './session.svelte.ts';

/**
 * Passkeys in the studio: adding one, signing in with one (passwordless, conditional UI, or as the
 * second factor after the password) and confirming admin work with one (step-up). Every function
 * answers with a result instead of throwing; `cancelled` is the person closing the browser's
 * prompt (or it timing out), which deserves no error message.
 */

export interface Passkey {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
  device_type: 'singleDevice' | 'multiDevice';
  backed_up: boolean;
}

/** A passkey ceremony the server began: its id and the options for the browser. */
export interface PasskeyAttempt {
  attempt_id: string;
  options: Record<string, unknown>;
}

export type PasskeyResult<T> = { ok: true; value: T } | { ok: false; cancelled: boolean; problem: Problem | null };

const STUDIO_HEADER = { 'x-celforge-studio': '1' };

export function passkeysSupported(): boolean {
  return browserSupportsWebAuthn();
}

/** Whether the browser can offer passkeys in the e-mail field's autofill (conditional UI). */
export function passkeyAutofillSupported(): Promise<boolean> {
  return browserSupportsWebAuthnAutofill();
}

/** Ends a pending passkey prompt (the conditional one, when leaving the sign-in page). */
export function cancelPasskeyPrompt(): void {
  WebAuthnAbortService.cancelCeremony();
}

const failed = (problem: Problem | null | undefined): { ok: false; cancelled: false; problem: Problem | null } => ({ ok: false, cancelled: false, problem: problem ?? null });

/** The browser's prompt: NotAllowedError / AbortError mean the person (or a newer prompt) ended it. */
async function ceremony<T>(run: () => Promise<T>): Promise<PasskeyResult<T>> {
  try {
    return { ok: true, value: await run() };
  } catch (error) {
    const name = error instanceof Error ? ((error as { cause?: { name?: string } }).cause?.name ?? error.name) : '';
    const cancelled = name === 'NotAllowedError' || name === 'AbortError' || (error as { code?: string }).code === 'ERROR_CEREMONY_ABORTED';
    return { ok: false, cancelled, problem: null };
  }
}

export async function listPasskeys(): Promise<PasskeyResult<Passkey[]>> {
  const { data, error } = await api.GET('/api/auth/passkeys');
  return data ? { ok: true, value: data.items } : failed(error as Problem);
}

/** Adds a passkey: the password again, then the browser's prompt. */
export async function registerPasskey(password: string, name?: string): Promise<PasskeyResult<Passkey>> {
  const start = await api.POST('/api/auth/passkeys/registration/options', { body: { password } });
  if (!start.data) return failed(start.error as Problem);
  const created = await ceremony(() => startRegistration({ optionsJSON: start.data.options as unknown as PublicKeyCredentialCreationOptionsJSON }));
  if (!created.ok) return created;
  const finish = await api.POST('/api/auth/passkeys/registration', {
    body: { attempt_id: start.data.attempt_id, ...(name ? { name } : {}), response: created.value as never },
  });
  return finish.data ? { ok: true, value: finish.data } : failed(finish.error as Problem);
}

export async function renamePasskey(id: string, name: string): Promise<PasskeyResult<Passkey>> {
  const { data, error } = await api.PATCH('/api/auth/passkeys/{id}', { params: { path: { id } }, body: { name } });
  return data ? { ok: true, value: data } : failed(error as Problem);
}

export async function removePasskey(id: string): Promise<PasskeyResult<null>> {
  const { response, error } = await api.DELETE('/api/auth/passkeys/{id}', { params: { path: { id } } });
  return response.status === 204 ? { ok: true, value: null } : failed(error as unknown as Problem | undefined);
}

/**
 * Passwordless sign-in with a discoverable passkey. With `autofill`, the browser offers the
 * passkeys in the e-mail field's suggestions and this resolves once one is chosen.
 */
export async function signInWithPasskey(options: { autofill?: boolean } = {}): Promise<PasskeyResult<SignInResult>> {
  let attempt: PasskeyAttempt;
  try {
    const response = await fetch('/api/auth/passkeys/signin/options', { method: 'POST', headers: STUDIO_HEADER, credentials: 'same-origin' });
    if (!response.ok) return failed((await response.json().catch(() => null)) as Problem | null);
    attempt = (await response.json()) as PasskeyAttempt;
  } catch {
    return failed(null);
  }
  return finishPasskeySignIn(attempt, options.autofill === true);
}

/** The second factor after the password: the attempt comes with the server's 401 (`problem.passkey`). */
export function confirmSignInWithPasskey(attempt: PasskeyAttempt): Promise<PasskeyResult<SignInResult>> {
  return finishPasskeySignIn(attempt, false);
}

async function finishPasskeySignIn(attempt: PasskeyAttempt, autofill: boolean): Promise<PasskeyResult<SignInResult>> {
  const asserted = await ceremony(() =>
    startAuthentication({ optionsJSON: attempt.options as unknown as PublicKeyCredentialRequestOptionsJSON, useBrowserAutofill: autofill }),
  );
  if (!asserted.ok) return asserted;
  return { ok: true, value: await signInWithPasskeyAssertion(attempt.attempt_id, asserted.value) };
}

/** Confirms admin work with a passkey (user verification required): the session is stepped up for a while. */
export async function stepUpWithPasskey(): Promise<PasskeyResult<{ mfa_at: string; valid_until: string }>> {
  const start = await api.POST('/api/auth/passkeys/step-up/options');
  if (!start.data) return failed(start.error as Problem);
  const asserted = await ceremony(() => startAuthentication({ optionsJSON: start.data.options as unknown as PublicKeyCredentialRequestOptionsJSON }));
  if (!asserted.ok) return asserted;
  const finish = await api.POST('/api/auth/passkeys/step-up', { body: { attempt_id: start.data.attempt_id, response: asserted.value as never } });
  return finish.data ? { ok: true, value: finish.data } : failed(finish.error as Problem);
}
