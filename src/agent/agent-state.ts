/**
 * What the agent keeps in its state dir between runs: the credential it got
 * at enrollment (credential.json, 0600), the server's CA it pinned
 * (server-ca.pem) and the last deploy_to it was told
 * (agent-state.json), so heartbeats and start-up cleanup know where to look.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { healthSpec } from '../api/schemas.js';
import { ifMissing, LockstepError } from '../core/errors.js';
import { writeFileAtomic } from '../content/atomic-file.js';

const credentialFile = z.object({ server: z.string(), host: z.string(), env: z.string(), credential: z.string().min(1) });
/** The agent's identity after enrollment. */
export type AgentCredential = z.infer<typeof credentialFile>;

/** What the agent remembers between runs: where the application lives and how to check its health. */
const stateFile = z.object({ deployTo: z.string().nullable(), health: healthSpec.nullable().default(null) });
/** What the agent remembers about the host between runs. */
export type AgentState = z.infer<typeof stateFile>;

/** Path of the credential file in a state dir. */
export function credentialPath(stateDir: string): string {
  return join(stateDir, 'credential.json');
}

/** Path of the server's CA certificate the agent pinned (public, but only the agent writes it). */
export function serverCaPath(stateDir: string): string {
  return join(stateDir, 'server-ca.pem');
}

/** Path of the state file in a state dir. */
export function statePath(stateDir: string): string {
  return join(stateDir, 'agent-state.json');
}

/** The stored credential, or undefined when the agent has not enrolled yet. */
export async function readCredential(stateDir: string): Promise<AgentCredential | undefined> {
  const text = await readOptional(credentialPath(stateDir));
  if (text === undefined) return undefined;
  const parsed = credentialFile.safeParse(parseJson(text));
  if (!parsed.success) {
    throw new LockstepError('bad-input', `${credentialPath(stateDir)} is not a valid credential file; delete it and enroll again with a new token`);
  }
  return parsed.data;
}

/** Stores the credential (readable by the agent's user only). */
export async function writeCredential(stateDir: string, credential: AgentCredential): Promise<void> {
  await writeFileAtomic(credentialPath(stateDir), `${JSON.stringify(credential, null, 2)}\n`, 0o600);
}

/** The remembered state; an absent or unreadable file means nothing is known yet. */
export async function readAgentState(stateDir: string): Promise<AgentState> {
  const text = await readOptional(statePath(stateDir));
  const parsed = text === undefined ? undefined : stateFile.safeParse(parseJson(text));
  return parsed?.success ? parsed.data : { deployTo: null, health: null };
}

/** Stores the state. */
export async function writeAgentState(stateDir: string, state: AgentState): Promise<void> {
  await writeFileAtomic(statePath(stateDir), `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

async function readOptional(path: string): Promise<string | undefined> {
  return ifMissing(readFile(path, 'utf8'));
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}
