/** `lockstep firecall ca | open | close | list | show | reconcile`: emergency access to an environment's hosts. */
import { readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { FirecallView } from '../api/schemas.js';
import type { LockstepClient } from '../client/lockstep-client.js';
import { LockstepError } from '../core/errors.js';
import { color, json, line, table } from './output.js';

interface OutputOptions {
  readonly json?: boolean | undefined;
}

/** `lockstep firecall ca ENV`: the line to put in sshd's TrustedUserCAKeys on hosts without an agent. */
export async function firecallCa(client: LockstepClient, env: string, options: OutputOptions): Promise<void> {
  const result = await client.firecallCa(env);
  if (options.json) return json(result);
  line(result.publicKey);
}

export interface OpenOptions extends OutputOptions {
  readonly reason: string;
  readonly pubkey: string;
  readonly ttl?: string | undefined;
  readonly host?: string[] | undefined;
  readonly from?: string | undefined;
  readonly out?: string | undefined;
  readonly override?: boolean | undefined;
}

/** Where OpenSSH looks for the certificate of a key: id_ed25519.pub → id_ed25519-cert.pub. */
export function certificatePathFor(publicKeyFile: string): string {
  const file = resolve(publicKeyFile);
  return join(dirname(file), `${basename(file).replace(/\.pub$/, '')}-cert.pub`);
}

/** `lockstep firecall open ENV --reason TEXT --pubkey FILE`: signs a certificate and writes it next to the key. */
export async function firecallOpen(client: LockstepClient, env: string, options: OpenOptions): Promise<void> {
  if (!options.reason.trim()) throw new LockstepError('bad-input', 'a reason is required: --reason TEXT');
  let publicKey: string;
  try {
    publicKey = await readFile(options.pubkey, 'utf8');
  } catch (error) {
    throw new LockstepError('bad-input', `cannot read the public key ${options.pubkey}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`);
  }
  // A private key must never leave this machine.
  if (publicKey.includes('PRIVATE KEY')) throw new LockstepError('bad-input', `${options.pubkey} is a private key; pass the public key (${options.pubkey}.pub)`);
  const result = await client.openFirecall({
    env,
    reason: options.reason,
    publicKey,
    ...(options.ttl !== undefined ? { ttl: options.ttl } : {}),
    ...(options.host?.length ? { hosts: options.host } : {}),
    ...(options.from !== undefined ? { from: options.from } : {}),
    ...(options.override ? { override: true } : {}),
  });
  const out = resolve(options.out ?? certificatePathFor(options.pubkey));
  const call = result.firecall;
  if (result.certificate === null) {
    if (options.json) return json(result);
    line(`fire call ${call.id} ${color.yellow('awaiting approval')} on ${call.env}: ${call.reason}`);
    line(`an approver other than ${call.requestedBy} approves it: lockstep firecall approve ${call.id}`);
    line(`then fetch the certificate: lockstep firecall cert ${call.id} --out ${out}`);
    line(`the request expires at ${call.expiresAt} unless approved; the certificate is valid from the approval on`);
    return;
  }
  await writeFile(out, `${result.certificate}\n`, { mode: 0o644 });
  if (options.json) return json({ ...result, certificateFile: out });
  const privateKey = resolve(options.pubkey).replace(/\.pub$/, '');
  line(`fire call ${call.id} ${color.red('open')} on ${call.env} until ${call.expiresAt}: ${call.reason}`);
  line(`certificate ${out} (key id ${call.keyId}, serial ${call.serial}, accounts ${call.principals.join(', ')}${call.from ? `, from ${call.from}` : ''})`);
  line(`connect:    ssh -i ${privateKey}${options.out ? ` -o CertificateFile=${out}` : ''} ${call.principals[0] ?? 'root'}@HOST`);
  line(`hosts:      ${result.hosts.join(', ') || 'none enrolled yet'}`);
  line('everyone subscribed to the alerts was told; logins and terminal sessions are recorded.');
  line(`close it when done: lockstep firecall close ${call.id} --note TEXT`);
}

/** `lockstep firecall approve ID`: an approver other than the requester lets a fire call open; its certificate is signed now. */
export async function firecallApprove(client: LockstepClient, id: number, options: OutputOptions): Promise<void> {
  const result = await client.approveFirecall(id);
  if (options.json) return json(result);
  const call = result.firecall;
  line(`fire call ${call.id} approved by ${call.approvedBy ?? '?'}: ${color.red('open')} on ${call.env} until ${call.expiresAt}`);
  line(`${call.requestedBy} fetches the certificate: lockstep firecall cert ${call.id} --out KEY-cert.pub`);
}

/** `lockstep firecall cert ID [--out FILE]`: the certificate of an approved fire call, printed or written where ssh finds it. */
export async function firecallCert(client: LockstepClient, id: number, options: OutputOptions & { out?: string | undefined }): Promise<void> {
  const { firecall, certificate } = await client.showFirecall(id);
  if (certificate === null) {
    throw new LockstepError('conflict', `fire call ${id} has no certificate: it is ${firecall.state.replace(/_/g, ' ')}${firecall.state === 'awaiting_approval' ? ` (an approver runs: lockstep firecall approve ${id})` : ''}`);
  }
  const out = options.out === undefined ? undefined : resolve(options.out);
  if (out !== undefined) await writeFile(out, `${certificate}\n`, { mode: 0o644 });
  if (options.json) return json({ id, certificate, ...(out !== undefined ? { certificateFile: out } : {}) });
  line(out === undefined ? certificate : `certificate of fire call ${id} written to ${out} (valid until ${firecall.expiresAt})`);
}

/** `lockstep firecall close ID`: revokes the certificate on every host and ends its sessions. Exit 4 when a host online did not confirm. */
export async function firecallClose(client: LockstepClient, id: number, note: string | undefined, options: OutputOptions): Promise<void> {
  const result = await client.closeFirecall(id, note);
  const unconfirmed = result.hosts.filter((host) => !host.revoked && !host.detail.startsWith('offline'));
  if (options.json) json(result);
  else {
    line(`fire call ${id} closed; reconcile its changes: lockstep firecall reconcile ${id} --revert | --adopt --version V`);
    for (const host of result.hosts) line(`  ${host.host}: ${host.revoked ? color.green(host.detail) : color.red(host.detail)}`);
  }
  if (unconfirmed.length > 0) {
    throw new LockstepError('failed', `the revocation is not confirmed on ${unconfirmed.map((host) => host.host).join(', ')}; the certificate may still work there until ${result.firecall.expiresAt}`, { quiet: options.json === true });
  }
}

/** `lockstep firecall list [--env ENV]`. */
export async function firecallList(client: LockstepClient, env: string | undefined, options: OutputOptions): Promise<void> {
  const { firecalls } = await client.listFirecalls(env);
  if (options.json) return json(firecalls);
  if (firecalls.length === 0) return line('no fire calls');
  line(table([['ID', 'ENV', 'STATE', 'WHO', 'OPENED', 'UNTIL', 'REASON'], ...firecalls.map((call) => [String(call.id), call.env, stateOf(call), call.requestedBy, when(call.openedAt), when(call.closedAt ?? call.expiresAt), call.reason])]));
}

/** `lockstep firecall show ID`: who logged in where and when, what sshd refused, and the transcripts. */
export async function firecallShow(client: LockstepClient, id: number, options: OutputOptions): Promise<void> {
  const result = await client.showFirecall(id);
  if (options.json) return json(result);
  const call = result.firecall;
  line(`fire call ${call.id} on ${call.env}: ${stateOf(call)}`);
  line(`requested ${when(call.requestedAt)} by ${call.requestedBy}: ${call.reason}`);
  if (call.approval === 'awaiting') line(`approval  awaiting an approver other than ${call.requestedBy} until ${when(call.expiresAt)}: lockstep firecall approve ${call.id}`);
  else if (call.approval === 'approved') line(`approved  ${when(call.approvedAt)} by ${call.approvedBy ?? '?'}`);
  else if (call.approval === 'overridden') line(`override  opened without approval by ${call.requestedBy}: ${call.overrideReason ?? ''}`);
  else if (call.approval === 'expired') line('approval  none before the request expired; no certificate was issued');
  line(`key id    ${call.keyId} (serial ${call.serial}), accounts ${call.principals.join(', ')}${call.hosts ? `, hosts ${call.hosts.join(', ')}` : ''}${call.from ? `, from ${call.from}` : ''}`);
  if (call.approval !== 'awaiting' && call.approval !== 'expired') line(`valid     ${when(call.openedAt)} until ${when(call.expiresAt)}${call.closedAt ? `; closed ${when(call.closedAt)} by ${call.closedBy ?? '?'}` : ''}`);
  if (call.closeNote) line(`note      ${call.closeNote}`);
  if (call.reconciledAt) line(`reconciled ${when(call.reconciledAt)} by ${call.reconciledBy ?? '?'}: ${call.reconcileMode ?? ''}${call.reconcileVersion ? ` into ${call.reconcileVersion}` : ''}`);
  line('');
  if (result.logins.length === 0) line('logins: none recorded');
  else line(table([['LOGIN AT', 'HOST', 'ACCOUNT', 'FROM'], ...result.logins.map((login) => [when(login.at), login.host, login.user, login.from])]));
  const refused = result.events.filter((event) => event.kind === 'refused');
  if (refused.length > 0) {
    line('');
    line('refused by sshd:');
    for (const event of refused) line(`  ${when(event.at)} ${event.host}: ${event.line}`);
  }
  for (const transcript of result.transcripts) {
    line('');
    line(color.bold(`transcript ${transcript.host} ${transcript.name}`));
    line(transcript.text.replace(/\r\n/g, '\n').trimEnd());
  }
}

/** `lockstep firecall reconcile ID --revert | --adopt --version V`. */
export async function firecallReconcile(client: LockstepClient, id: number, options: OutputOptions & { revert?: boolean; adopt?: boolean; version?: string }): Promise<void> {
  if (options.revert === options.adopt) throw new LockstepError('bad-input', 'choose one: --revert (restore the baseline) or --adopt --version V (a release made from the changes)');
  if (options.adopt && options.version === undefined) throw new LockstepError('bad-input', '--adopt needs --version V: the version of the release made from the changes');
  if (options.revert && options.version !== undefined) throw new LockstepError('bad-input', '--version goes with --adopt, not --revert');
  const { firecall, outcome } = await client.reconcileFirecall(id, options.revert ? 'revert' : 'adopt', options.version);
  if (options.json) return json({ ...firecall, outcome });
  line(`fire call ${id} reconciled: ${outcome}; deployments to ${firecall.env} are allowed again`);
}

function stateOf(call: FirecallView): string {
  if (call.state === 'awaiting_approval') return color.yellow('awaiting approval');
  if (call.state === 'expired') return 'expired unapproved';
  if (call.state === 'open') return color.red(call.approval === 'overridden' ? 'open (override)' : 'open');
  if (call.state === 'unreconciled') return color.yellow('closed, unreconciled');
  return color.green(`reconciled (${call.reconcileMode ?? ''})`);
}

function when(iso: string | null): string {
  return iso ? iso.replace('T', ' ').slice(0, 19) : '-';
}
