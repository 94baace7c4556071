import { createCelforgeClient, type Problem } from '@celforge/client';
import { stepUpWithPasskey } from './passkeys.ts';
import { authFetch } from './session.svelte.ts';
import { slug } from './problems.ts';

/**
 * Step-up: administrative work needs a second factor verified in this session lately. A request
 * answered `step-up-required` opens one dialog (shared by every request waiting at the time); once
 * the person proves it is them, each waiting request is sent again. Cancelling hands the original
 * answer back to the screen.
 *
 * The proof is an authentication code (or recovery code) typed into the dialog, or a passkey.
 */
export type Proof = { kind: 'code'; code: string } | { kind: 'passkey' };

export const stepUp = $state({ open: false });

let waiting: Promise<boolean> | null = null;
let settle: ((proven: boolean) => void) | null = null;

/** Opens the dialog (once for everyone asking now); true when the person proved it is them. */
export function requestStepUp(): Promise<boolean> {
  waiting ??= new Promise<boolean>((resolve) => {
    settle = resolve;
    stepUp.open = true;
  });
  return waiting;
}

function close(proven: boolean) {
  stepUp.open = false;
  settle?.(proven);
  settle = null;
  waiting = null;
}

/** The dialog was dismissed: the waiting requests get their refusal back. */
export function cancelStepUp(): void {
  close(false);
}

/** Sends the proof; null when accepted (the waiting requests go again), else the problem to show. */
export async function sendProof(proof: Proof): Promise<Problem | null> {
  if (proof.kind === 'passkey') {
    const result = await stepUpWithPasskey();
    if (result.ok) close(true);
    return result.ok ? null : (result.problem ?? ({ type: 'about:blank', title: 'passkey', status: 0 } as Problem));
  }
  let response: Response;
  try {
    response = await authFetch(
      new Request('/api/auth/step-up', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ code: proof.code }) }),
    );
  } catch {
    return { type: 'about:blank', title: 'offline', status: 0 } as Problem;
  }
  if (response.ok) {
    close(true);
    return null;
  }
  return ((await response.json().catch(() => null)) as Problem | null) ?? ({ type: 'about:blank', title: response.statusText, status: response.status } as Problem);
}

async function problemOf(response: Response): Promise<Problem | null> {
  if (response.status !== 403) return null;
  return (await response.clone().json().catch(() => null)) as Problem | null;
}

/** fetch with the session's token that goes through step-up when the API asks for it. */
export async function stepUpFetch(request: Request): Promise<Response> {
  const again = request.clone();
  const response = await authFetch(request);
  if (slug(await problemOf(response)) !== 'step-up-required') return response;
  if (!(await requestStepUp())) return response;
  return authFetch(again);
}

/** The API client for administrative screens: every call steps up when asked. */
export const adminApi = createCelforgeClient({ fetch: stepUpFetch });
