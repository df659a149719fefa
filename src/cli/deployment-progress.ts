/**
 * Live progress of a deployment or rollback: on a terminal, a redrawn block
 * with one line per batch and a mark per host (log-update); otherwise plain
 * lines as hosts change state; with --json, NDJSON events (one JSON object a
 * line) ending with a `finished` event that holds the whole deployment.
 * A staging host's transfer shows as bytes and files of those it lacked, with
 * its rate (a `progress` event in NDJSON).
 */
import type logUpdate from 'log-update';
import type { DeploymentView } from '../api/schemas.js';
import { formatDuration } from '../core/duration.js';
import { shortId } from '../core/manifest.js';
import { color, line } from './output.js';

type HostStep = DeploymentView['hosts'][number];
type Progress = NonNullable<HostStep['progress']>;

/** In plain lines, a host's transfer is printed at most this often. */
const LINE_PROGRESS_EVERY_MS = 5000;

/** How progress is shown. */
export type ProgressMode = 'terminal' | 'lines' | 'ndjson';

/** Chooses the mode from the output options and whether stdout is a terminal. */
export function progressMode(json: boolean): ProgressMode {
  if (json) return 'ndjson';
  return process.stdout.isTTY === true && process.env.TERM !== 'dumb' ? 'terminal' : 'lines';
}

const MARK: Readonly<Record<HostStep['state'], (text: string) => string>> = {
  waiting: color.dim,
  pending: color.dim,
  staging: color.yellow,
  activated: color.yellow,
  succeeded: color.green,
  failed: color.red,
  skipped: color.dim,
  reverting: color.yellow,
  reverted: color.yellow,
  revert_failed: color.red,
};

const SYMBOL: Readonly<Record<HostStep['state'], string>> = {
  waiting: '·',
  pending: '…',
  staging: '↓',
  activated: '♥',
  succeeded: '✓',
  failed: '✗',
  skipped: '-',
  reverting: '↺',
  reverted: '↺',
  revert_failed: '✗',
};

/** Redraws a block of lines in place on a terminal. */
type TerminalBlock = typeof logUpdate;

/**
 * Opens the progress output for `--json` or not. log-update is loaded only to
 * draw on a terminal: its Unicode width tables take ~9 ms to set up, which
 * every command paid at start-up when it was a static import.
 */
export async function openProgress(json: boolean): Promise<DeploymentProgress> {
  const mode = progressMode(json);
  return new DeploymentProgress(mode, mode === 'terminal' ? (await import('log-update')).default : undefined);
}

/** Renders successive views of one deployment. */
export class DeploymentProgress {
  private readonly seen = new Map<string, string>();
  /** Per host: the bytes of the progress last shown, and when (lines). */
  private readonly progressShown = new Map<string, { bytes: number; at: number }>();
  private lastState: string | undefined;
  private lastBatch = -1;
  private readonly started = Date.now();

  constructor(
    private readonly mode: ProgressMode,
    private readonly terminal?: TerminalBlock,
  ) {}

  /** The terminal block, which `openProgress` loads for the terminal mode. */
  private get draw(): TerminalBlock {
    if (this.terminal === undefined) throw new Error('DeploymentProgress: the terminal mode needs log-update; create it with openProgress()');
    return this.terminal;
  }

  /** Shows a new view (call with every revision). */
  update(view: DeploymentView): void {
    if (this.mode === 'terminal') this.draw(this.block(view));
    else if (this.mode === 'lines') this.lines(view);
    else this.events(view);
  }

  /** Leaves the final view on screen (terminal) or emits the final event (NDJSON). */
  finish(view: DeploymentView): void {
    if (this.mode === 'terminal') {
      this.draw(this.block(view));
      this.draw.done();
    } else if (this.mode === 'lines') {
      this.lines(view);
    } else {
      this.events(view);
      process.stdout.write(`${JSON.stringify({ event: 'finished', deployment: view })}\n`);
    }
  }

  /** How long since the progress started. */
  elapsed(): string {
    return formatDuration(Date.now() - this.started);
  }

  private block(view: DeploymentView): string {
    const rows = [`${title(view)}: ${stateText(view.state)} ${color.dim(this.elapsed())}`];
    for (let batch = 0; batch < view.batches; batch++) {
      const hosts = view.hosts.filter((host) => host.batch === batch);
      const label = batchLabel(view, batch).padEnd(12);
      rows.push(`  ${batch === view.currentBatch && view.state === 'running' ? color.bold(label) : label} ${hosts.map((host) => MARK[host.state](`${SYMBOL[host.state]} ${host.host}`)).join('  ')}`);
    }
    for (const host of view.hosts) if (host.state === 'staging' && host.progress) rows.push(color.dim(`  ${host.host}: ${transferText(host.progress)}`));
    for (const host of view.hosts) if (host.error) rows.push(color.red(`  ${host.host}: ${host.error}`));
    return rows.join('\n');
  }

  private lines(view: DeploymentView): void {
    if (view.currentBatch !== this.lastBatch && view.batches > 1 && view.state === 'running') {
      this.lastBatch = view.currentBatch;
      const hosts = view.hosts.filter((host) => host.batch === view.currentBatch).map((host) => host.host);
      line(`  ${batchLabel(view, view.currentBatch)}: ${hosts.join(', ')}`);
    }
    for (const host of this.changedHosts(view)) {
      if (host.state === 'pending' || host.state === 'waiting') continue;
      line(`  ${host.host}: ${MARK[host.state](host.state === 'succeeded' ? 'ok' : host.state.replace('_', ' '))}${host.error ? ` ${host.error}` : ''}`);
    }
    for (const host of this.progressed(view, LINE_PROGRESS_EVERY_MS)) line(`  ${host.host}: ${transferText(host.progress as Progress)}`);
    // The deployment's own state last, after the host lines that led to it.
    if (view.state !== this.lastState && this.lastState !== undefined && view.state !== 'succeeded') line(`${title(view)}: ${view.state.replace(/_/g, ' ')}`);
    this.lastState = view.state;
  }

  /** The hosts whose state or error differs from the last view shown; remembers them as shown. */
  private changedHosts(view: DeploymentView): DeploymentView['hosts'] {
    return view.hosts.filter((host) => {
      const key = `${host.state}:${host.error ?? ''}`;
      if (this.seen.get(host.host) === key) return false;
      this.seen.set(host.host, key);
      return true;
    });
  }

  /** The staging hosts whose transfer moved since it was last shown, at most once per `everyMs`; remembers them as shown. */
  private progressed(view: DeploymentView, everyMs: number): DeploymentView['hosts'] {
    const now = Date.now();
    return view.hosts.filter((host) => {
      if (host.state !== 'staging' || host.progress === undefined) return false;
      const last = this.progressShown.get(host.host);
      if (last !== undefined && (last.bytes === host.progress.bytes || now - last.at < everyMs)) return false;
      this.progressShown.set(host.host, { bytes: host.progress.bytes, at: now });
      return true;
    });
  }

  private events(view: DeploymentView): void {
    if (view.state !== this.lastState) {
      this.lastState = view.state;
      process.stdout.write(`${JSON.stringify({ event: 'deployment', id: view.id, kind: view.kind, env: view.env, releaseId: view.releaseId, version: view.version, state: view.state, currentBatch: view.currentBatch, batches: view.batches })}\n`);
    }
    for (const host of this.changedHosts(view)) {
      process.stdout.write(`${JSON.stringify({ event: 'host', id: view.id, host: host.host, batch: host.batch, state: host.state, error: host.error, at: host.updatedAt })}\n`);
    }
    for (const host of this.progressed(view, 0)) {
      const progress = host.progress as Progress;
      process.stdout.write(`${JSON.stringify({ event: 'progress', id: view.id, host: host.host, ...progress, bytesPerSecond: bytesPerSecond(progress) })}\n`);
    }
  }
}

/** The average rate of a transfer so far, in bytes per second. */
function bytesPerSecond(progress: Progress): number {
  return progress.elapsedMs > 0 ? Math.round((progress.bytes * 1000) / progress.elapsedMs) : 0;
}

/** "fetching 12.0 of 24.0 MB (50%), 12 of 24 files, 4.0 MB/s". */
function transferText(progress: Progress): string {
  const mb = (bytes: number) => (bytes / 1e6).toFixed(1);
  const percent = progress.totalBytes > 0 ? Math.floor((progress.bytes * 100) / progress.totalBytes) : 100;
  return `fetching ${mb(progress.bytes)} of ${mb(progress.totalBytes)} MB (${percent}%), ${progress.files} of ${progress.totalFiles} files, ${mb(bytesPerSecond(progress))} MB/s`;
}

function title(view: DeploymentView): string {
  return `${view.kind === 'deploy' ? 'deployment' : view.kind} #${view.id} ${view.version} (${shortId(view.releaseId)}) to ${view.env}`;
}

function batchLabel(view: DeploymentView, batch: number): string {
  const hasCanary = view.kind === 'deploy' && view.batches > 1 && view.hosts.filter((host) => host.batch === 0).length < view.hosts.length;
  if (view.batches === 1) return 'all hosts';
  return hasCanary && batch === 0 ? 'canary' : `batch ${batch + (hasCanary ? 0 : 1)}/${view.batches - (hasCanary ? 1 : 0)}`;
}

function stateText(state: DeploymentView['state']): string {
  if (state === 'succeeded') return color.green('succeeded');
  if (state === 'failed') return color.red('failed');
  if (state === 'rolling_back') return color.red('rolling back');
  if (state === 'rejected' || state === 'expired') return color.red(state);
  if (state === 'awaiting_approval') return color.yellow('awaiting approval');
  return color.yellow('running');
}
