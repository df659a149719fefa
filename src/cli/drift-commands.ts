/**
 * `lockstep drift …`: list drift, and ask hosts to scan, revert or accept,
 * waiting for their answers; adopt drift into a new release.
 */
import type { CommandView, DriftEntryAttrs, DriftItemView } from '../api/schemas.js';
import type { LockstepClient } from '../client/lockstep-client.js';
import { LockstepError } from '../core/errors.js';
import { shortId } from '../core/manifest.js';
import { ago, color, json, line, progress, progressDone, table } from './output.js';

interface OutputOptions {
  readonly json?: boolean | undefined;
}

/** How long the CLI waits for hosts to answer a command: a revert of a large tree may take a while. */
const COMMAND_TIMEOUT_MS = 10 * 60_000;

/** `lockstep drift [ENV|HOST] [--all]`. */
export async function driftList(client: LockstepClient, target: string | undefined, all: boolean, options: OutputOptions & { readonly exitCode?: boolean | undefined }): Promise<void> {
  const { items } = await client.drift(target, all);
  if (options.json) json(items);
  else if (items.length === 0) line(`no ${all ? '' : 'open '}drift${target ? ` on ${target}` : ''}`);
  else {
    line(
      table([
        ['HOST', 'PATH', 'CHANGE', 'EXPECTED', 'ACTUAL', 'FIRST SEEN', 'LAST SEEN', 'STATE'],
        ...items.map((item) => [item.host, item.path, item.kinds.join(','), describeAttrs(item.expected), describeAttrs(item.actual), ago(item.firstSeenAt), ago(item.lastSeenAt), describeState(item)]),
      ]),
    );
  }
  const open = items.filter((item) => item.state === 'open').length;
  if (options.exitCode === true && open > 0) {
    throw new LockstepError('mismatch', `${open} open drift item${open === 1 ? '' : 's'}${target ? ` on ${target}` : ''}; revert, accept or adopt them (docs/drift.md)`, { quiet: options.json === true });
  }
}

/** One side of a finding in a few words: type, mode, owner, hash or target, problem. */
export function describeAttrs(attrs: DriftEntryAttrs | null): string {
  if (attrs === null) return '(absent)';
  if (attrs.special === 'package') return `${attrs.version ?? '?'}${attrs.detail ? ` (${attrs.detail})` : ''}`;
  const parts: string[] = [attrs.type === 'other' ? (attrs.special ?? 'special') : attrs.type];
  if (attrs.mode !== undefined && attrs.type !== 'symlink') parts.push(attrs.mode.toString(8).padStart(4, '0'));
  if (attrs.uid !== undefined || attrs.gid !== undefined) parts.push(`${attrs.uid ?? '?'}:${attrs.gid ?? '?'}`);
  if (attrs.sha256 !== undefined) parts.push(`sha256:${attrs.sha256.slice(0, 12)}`);
  else if (attrs.size !== undefined && attrs.type === 'file') parts.push(`${attrs.size} B`);
  if (attrs.target !== undefined) parts.push(`-> ${attrs.target}`);
  if (attrs.problem !== undefined) parts.push(`(${attrs.problem}${attrs.detail ? `: ${attrs.detail}` : ''})`);
  if (attrs.ownedBy !== undefined) parts.push(`(package ${attrs.ownedBy})`);
  return parts.join(' ');
}

function describeState(item: DriftItemView): string {
  if (item.state !== 'open') return `${item.state}${item.closedBy ? ` by ${item.closedBy}` : ''}${item.closedAt ? ` ${ago(item.closedAt)}` : ''}`;
  const adopted = item.adoptedInto ? `, adopted into ${item.adoptedInto.version} (${shortId(item.adoptedInto.id)})` : '';
  const firecall = item.firecall !== null && item.firecall !== undefined ? `, changed under fire call ${item.firecall}` : '';
  return color.red('open') + firecall + adopted;
}

/** Waits for every command, printing each host's answer as it comes (on a terminal, a progress line meanwhile). */
/** Waits for every command's answer, printing each host's outcome as it comes (not with --json). */
export async function waitForAll(client: LockstepClient, commands: readonly CommandView[], options: OutputOptions): Promise<CommandView[]> {
  const waiting = new Set(commands.map((command) => command.host));
  const show = () => progress(`waiting for ${[...waiting].join(', ')}…`);
  if (!options.json) show();
  const finished = await Promise.all(
    commands.map(async (command) => {
      const view = await client.waitForCommand(command, COMMAND_TIMEOUT_MS);
      waiting.delete(view.host);
      if (!options.json) {
        progressDone();
        line(describeResult(view));
        if (waiting.size > 0) show();
      }
      return view;
    }),
  );
  return finished;
}

function describeResult(view: CommandView): string {
  if (view.state === 'pending' || view.state === 'sent') return `${view.host}: ${color.yellow('no answer')} within ${COMMAND_TIMEOUT_MS / 60_000} minutes (is its agent running? follow it with: lockstep drift ${view.host})`;
  if (view.ok) return `${view.host}: ${color.green('ok')}${view.detail ? ` ${view.detail}` : ''}`;
  return `${view.host}: ${color.red('failed')} ${view.error ?? ''}${view.detail ? ` (${view.detail})` : ''}`;
}

/** Exit 4 when a host failed or did not answer. */
export function requireAllOk(views: readonly CommandView[], what: string, options: OutputOptions): void {
  const failed = views.filter((view) => view.ok !== true);
  if (failed.length > 0) throw new LockstepError('failed', `${what} failed on ${failed.map((view) => view.host).join(', ')}`, { quiet: options.json === true });
}

/** `lockstep drift scan HOST [--full]`. */
export async function driftScan(client: LockstepClient, host: string, full: boolean, options: OutputOptions): Promise<void> {
  const [view] = await waitForAll(client, [await client.driftScan(host, full)], options);
  if (options.json) json(view);
  requireAllOk(view ? [view] : [], `${full ? 'full ' : ''}scan`, options);
}

/** `lockstep drift revert HOST|ENV [--path P...] [--reason TEXT]`. */
export async function driftRevert(client: LockstepClient, target: string, paths: readonly string[] | undefined, reason: string | undefined, options: OutputOptions): Promise<void> {
  const { commands, skipped } = await client.driftRevert(target, paths, reason);
  if (commands.length === 0) {
    if (options.json) return json({ commands: [], skipped });
    return line(`no open drift to revert on ${target}`);
  }
  if (!options.json && skipped.length > 0) line(color.dim(`no open drift on ${skipped.join(', ')}`));
  const views = await waitForAll(client, commands, options);
  if (options.json) json({ commands: views, skipped });
  requireAllOk(views, 'revert', options);
}

/** `lockstep drift accept HOST --path P... --reason TEXT`. */
export async function driftAccept(client: LockstepClient, host: string, paths: readonly string[], reason: string, options: OutputOptions): Promise<void> {
  const [view] = await waitForAll(client, [await client.driftAccept(host, paths, reason)], options);
  if (options.json) json(view);
  requireAllOk(view ? [view] : [], 'accept', options);
}

/** `lockstep release capture HOST --version V [--packages] [--path P...]`: the release id on stdout, what was captured on stderr; exit 4 when the host failed. */
export async function releaseCapture(client: LockstepClient, host: string, version: string, packages: boolean, paths: readonly string[], options: OutputOptions): Promise<void> {
  if (!packages && paths.length === 0) throw new LockstepError('bad-input', 'nothing to capture: give --packages, --path P, or both');
  const [view] = await waitForAll(client, [await client.releaseCapture(host, version, packages, paths)], options);
  if (options.json) json(view);
  requireAllOk(view ? [view] : [], 'capture', options);
  if (options.json) return;
  const id = /\b[0-9a-f]{64}\b/.exec(view?.detail ?? '')?.[0];
  if (id !== undefined) line(id);
  process.stderr.write(`promote it like any release: lockstep deploy ${id === undefined ? `app@${version}` : `${id.slice(0, 12)}`} --to ENV\n`);
}

/** `lockstep drift adopt HOST --version V --reason TEXT`. */
export async function driftAdopt(client: LockstepClient, host: string, version: string, reason: string, options: OutputOptions): Promise<void> {
  const result = await client.driftAdopt(host, version, reason);
  if (options.json) return json(result);
  line(result.release.id);
  process.stderr.write(
    `${result.created ? 'created' : 'already exists:'} ${result.release.app}@${result.release.version} from ${host}'s release and its ${result.items} drifted item${result.items === 1 ? '' : 's'} (release files, packages); ` +
      `the drift stays open until it runs there. It goes through the promotion gate like any release: deploy it to ${result.firstEnv ?? 'the first environment'} first: lockstep deploy ${result.release.app}@${result.release.version} --to ${result.firstEnv ?? 'ENV'}\n`,
  );
}
