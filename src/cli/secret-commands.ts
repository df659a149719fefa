/** `lockstep secret set | list | rm`: an environment's secrets, whose values go only to its hosts and are never printed. */
import { readFile } from 'node:fs/promises';
import type { LockstepClient } from '../client/lockstep-client.js';
import { cannotRead, LockstepError } from '../core/errors.js';
import { secretNameProblem } from '../core/secret-name.js';
import { color, json, line, table } from './output.js';

interface OutputOptions {
  readonly json?: boolean | undefined;
}

/** Where `secret set` reads the value: standard input, or `--from-file`. */
export interface SecretSource {
  readonly fromFile?: string | undefined;
  /** Standard input; only read when no file is named. */
  readonly stdin: NodeJS.ReadableStream & { readonly isTTY?: boolean | undefined };
}

/**
 * The value to set: the file's bytes exactly, or standard input without one trailing line break (what
 * `echo VALUE |` and a here-string add). Refuses a terminal on stdin (nothing would be hidden) and an empty value.
 */
export async function readSecretValue(source: SecretSource): Promise<string> {
  let value: string;
  if (source.fromFile !== undefined) {
    const file = source.fromFile;
    value = await readFile(file, 'utf8').catch((error: unknown) => {
      throw cannotRead(file, error, 'name a readable file with --from-file');
    });
  } else {
    if (source.stdin.isTTY === true) throw new LockstepError('bad-input', 'pipe the secret value on standard input (e.g. `lockstep secret set ENV NAME < file`) or use --from-file FILE; it is never read from the terminal');
    let text = '';
    for await (const chunk of source.stdin) text += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    value = text.replace(/\r?\n$/, '');
  }
  if (value.length === 0) throw new LockstepError('bad-input', `the secret value is empty; ${source.fromFile === undefined ? 'pipe it on standard input' : `${source.fromFile} is empty`}`);
  return value;
}

/** Refuses a bad name before anything is read or sent (the server checks the same rule). */
function checkName(name: string): void {
  const problem = secretNameProblem(name);
  if (problem !== undefined) throw new LockstepError('bad-input', problem);
}

/** `lockstep secret set ENV NAME [--from-file FILE]`: stores a new version; the value is never printed. */
export async function secretSet(client: LockstepClient, env: string, name: string, source: SecretSource, options: OutputOptions): Promise<void> {
  checkName(name);
  const value = await readSecretValue(source);
  const result = await client.setSecret(env, name, value);
  if (options.json) return json(result);
  line(`secret ${result.name} set in ${result.env} as version ${result.version}; hosts of ${result.env} get it at their next deployment`);
}

/** `lockstep secret list ENV`: names, versions, who set them and when; never values. */
export async function secretList(client: LockstepClient, env: string, options: OutputOptions): Promise<void> {
  const result = await client.listSecrets(env);
  if (options.json) return json(result);
  if (result.secrets.length === 0) return line(`${env} has no secrets; set one with: lockstep secret set ${env} NAME < FILE`);
  line(
    table([
      ['NAME', 'VERSION', 'SET BY', 'SET AT', 'ON HOSTS'].map((title) => color.dim(title)),
      ...result.secrets.map((secret) => [secret.name, String(secret.version), secret.setBy, secret.setAt, secret.deployed ? 'yes' : color.yellow('at the next deployment')]),
    ]),
  );
}

/** `lockstep secret rm ENV NAME`: removes it; hosts drop its file at their next deployment. */
export async function secretRm(client: LockstepClient, env: string, name: string, options: OutputOptions): Promise<void> {
  checkName(name);
  const result = await client.removeSecret(env, name);
  if (options.json) return json(result);
  line(`secret ${result.name} (version ${result.version}) removed from ${result.env}; hosts of ${result.env} drop it at their next deployment`);
}
