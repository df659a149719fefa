/**
 * The CLI's commands as plain async functions over the client. They throw
 * LockstepErrors; only the entry (src/main.ts) turns them into messages and
 * exit codes.
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import type { DeploymentView, PlanResponse, ReleaseShowResponse, StatusResponse } from '../api/schemas.js';
import { RELEASE_PARTS_FILE } from '../core/system-parts.js';
import type { LockstepClient } from '../client/lockstep-client.js';
import { formatDuration } from '../core/duration.js';
import { cannotRead, LockstepError } from '../core/errors.js';
import { shortId } from '../core/manifest.js';
import { ago, color, formatBytes, json, line, progress, progressDone, table } from './output.js';
import { openProgress, progressMode } from './deployment-progress.js';
import { uploadRelease } from './release-upload.js';

/** Options every printing command takes. */
export interface OutputOptions {
  readonly json?: boolean | undefined;
}

/** `lockstep init`: writes the commented starter lockstep.yaml. */
export async function init(file: string, force: boolean, options: OutputOptions): Promise<void> {
  const exists = await access(file).then(
    () => true,
    () => false,
  );
  if (exists && !force) throw new LockstepError('bad-input', `${file} already exists; use --force to overwrite it`);
  const { STARTER_CONFIG } = await import('../core/config.js');
  await writeFile(file, STARTER_CONFIG, { flag: force ? 'w' : 'wx' });
  if (options.json) json({ file });
  else line(`wrote ${file}; edit it, then run: lockstep apply -f ${file}`);
}

/** `lockstep apply -f FILE`: validates locally (same rules as the server) and stores it. */
export async function apply(client: LockstepClient, file: string, options: OutputOptions): Promise<void> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (error) {
    throw cannotRead(file, error);
  }
  // Loaded here only: the config schema pulls in the YAML and schema libraries.
  const { parseConfig } = await import('../core/config.js');
  const config = parseConfig(text, file);
  const result = await client.applyConfig(text, file);
  if (options.json) json({ ...result, file });
  else if (!result.changed) line(`${file} is already applied (config version ${result.version})`);
  else line(`applied ${file} as config version ${result.version}: app ${config.app}, environments ${Object.keys(config.environments).join(', ')}`);
}

/** `lockstep release create DIR --version V`: hashes, uploads only missing blobs, registers the release. */
export async function releaseCreate(client: LockstepClient, dir: string, version: string, app: string | undefined, options: OutputOptions): Promise<void> {
  const started = Date.now();
  const summary = await uploadRelease(client, dir, version, app, progress);
  progressDone();
  if (options.json) return json(summary);
  line(summary.id);
  process.stderr.write(
    `${summary.created ? 'created' : 'already exists:'} ${summary.app}@${summary.version}: ${summary.files} files, ${formatBytes(summary.bytes)}; uploaded ${summary.uploaded.blobs} blobs (${formatBytes(summary.uploaded.bytes)}) in ${formatDuration(Date.now() - started)}\n`,
  );
}

/** `lockstep gc`: removes blobs no release, open drift item or open upload session references, past the server's grace period. */
export async function gc(client: LockstepClient, options: OutputOptions & { dryRun?: boolean }): Promise<void> {
  const result = await client.gc(options.dryRun === true);
  if (options.json) return json(result);
  if (result.dryRun) for (const blob of result.blobs) line(`${blob.hash}  ${formatBytes(blob.size)}  stored ${ago(blob.storedAt)}`);
  const verb = result.dryRun ? 'would remove' : 'removed';
  process.stderr.write(`${verb} ${result.count} unreferenced blob${result.count === 1 ? '' : 's'} (${formatBytes(result.bytes)}) older than ${formatDuration(result.graceSeconds * 1000)}\n`);
}

/** `lockstep release list`. */
export async function releaseList(client: LockstepClient, options: OutputOptions): Promise<void> {
  const { releases } = await client.listReleases();
  if (options.json) return json(releases);
  if (releases.length === 0) return line('no releases yet; create one with: lockstep release create DIR --version V');
  line(
    table([
      ['ID', 'VERSION', 'FILES', 'SIZE', 'CREATED', 'ENVIRONMENTS'],
      ...releases.map((release) => [
        shortId(release.id),
        `${release.app}@${release.version}`,
        String(release.files),
        formatBytes(release.bytes),
        ago(release.createdAt),
        release.environments.map((env) => `${env.env}${env.current ? '*' : ''}${env.rolledBackAt ? '(rolled back)' : env.succeededAt ? '' : '(not succeeded)'}`).join(' ') || '-',
      ]),
    ]),
  );
}

/** The system parts of a release for people: each managed file and package it declares. */
function systemPartsLines(system: ReleaseShowResponse['manifest']['system']): string[] {
  if (system === undefined) return [];
  const lines = ['', `system parts (${RELEASE_PARTS_FILE}):`];
  for (const file of system.files) {
    const details = [`from ${file.source}`, `mode ${file.mode.toString(8).padStart(4, '0')}`, ...(file.owner ? [`owner ${file.owner}`] : []), ...(file.template ? ['template'] : []), ...(file.afterChange ? [`after_change: ${file.afterChange}`] : [])];
    lines.push(`  file     ${file.path} (${details.join(', ')})`);
  }
  for (const declared of system.packages) lines.push(`  package  ${declared.name} ${declared.version}${declared.kind === 'deb' ? ` (${declared.deb}, ${declared.architecture})` : ' (apt)'}`);
  if (system.files.length + system.packages.length === 0) lines.push('  none declared');
  return lines;
}

/** The managed files and packages a plan changes, hosts with the same changes together (secrets are masked by the server). */
function systemPlanLines(hosts: PlanResponse['hosts']): string[] {
  const groups = new Map<string, { hosts: string[]; system: NonNullable<PlanResponse['hosts'][number]['system']> }>();
  for (const host of hosts) {
    if (host.system === undefined || host.system.files.length + host.system.packages.length === 0) continue;
    const key = JSON.stringify(host.system);
    const group = groups.get(key);
    if (group) group.hosts.push(host.host);
    else groups.set(key, { hosts: [host.host], system: host.system });
  }
  const lines: string[] = [];
  for (const { hosts: names, system } of groups.values()) {
    lines.push('', `system parts on ${names.join(', ')}:`);
    for (const change of system.packages) {
      const what = change.action === 'install' ? `${change.to}` : change.action === 'remove' ? `${change.from}` : `${change.from} -> ${change.to}`;
      lines.push(`  package ${change.action.padEnd(9)} ${change.name} ${what}`);
    }
    for (const file of system.files) {
      const what = file.change === 'create' ? 'created' : file.change === 'update' ? 'changed' : 'no longer managed: its original content comes back';
      lines.push(`  file    ${file.path}: ${what}${file.error ? ` (${color.red(file.error)})` : ''}`);
      for (const diffLine of file.diff.split('\n')) if (diffLine !== '') lines.push(`    ${diffLine}`);
    }
  }
  return lines;
}

/** `lockstep release show REF`. */
export async function releaseShow(client: LockstepClient, ref: string, options: OutputOptions): Promise<void> {
  const { release, manifest } = await client.showRelease(ref);
  if (options.json) return json({ ...release, manifest });
  line(`release  ${release.id}`);
  line(`version  ${release.app}@${release.version}`);
  line(`created  ${release.createdAt} by ${release.createdBy}`);
  line(`content  ${release.files} files, ${formatBytes(release.bytes)}`);
  for (const env of release.environments) {
    const state = env.rolledBackAt ? `rolled back ${env.rolledBackAt}` : env.succeededAt ? `succeeded ${env.succeededAt}` : 'deployed, not succeeded';
    line(`${env.env.padEnd(8)} ${state}${env.current ? ' (current)' : ''}`);
  }
  for (const text of systemPartsLines(manifest.system)) line(text);
}

/** `lockstep host add NAME --env ENV`. */
export async function hostAdd(client: LockstepClient, name: string, env: string, options: OutputOptions): Promise<void> {
  const result = await client.addHost(name, env);
  if (options.json) return json(result);
  line(`host ${result.host} added to ${result.env}. One-time enrollment token (shown once):`);
  line(result.enrollToken);
  if (result.caFingerprint === null) return line(`on the host run: lockstep agent --server ${'$LOCKSTEP_SERVER'} --token ${result.enrollToken}`);
  line(`server CA fingerprint: ${result.caFingerprint}`);
  line(`on the host run: lockstep agent --server ${'$LOCKSTEP_SERVER'} --ca-fingerprint ${result.caFingerprint} --token ${result.enrollToken}`);
}

/** `lockstep host list`. */
export async function hostList(client: LockstepClient, options: OutputOptions): Promise<void> {
  const { hosts } = await client.listHosts();
  if (options.json) return json(hosts);
  line(table([['HOST', 'ENV', 'STATE', 'RELEASE', 'LAST SEEN'], ...hosts.map((host) => [host.name, host.env, hostState(host), host.version ?? '-', ago(host.lastSeenAt)])]));
}

/** `lockstep plan RELEASE --to ENV`: verdict, batches and per-host changes, changing nothing. Exit 3 when refused. */
export async function plan(client: LockstepClient, release: string, env: string, options: OutputOptions): Promise<void> {
  const result = await client.plan(release, env);
  if (options.json) json(result);
  else {
    const verdict = result.verdict.kind === 'allowed' ? color.green('allowed') : result.verdict.kind === 'waiting' ? color.yellow('waiting for approvals') : color.red('refused');
    line(`${result.release.app}@${result.release.version} (${shortId(result.release.id)}) -> ${env}: ${verdict}`);
    for (const rule of result.verdict.rules) line(`  ${rule.passed ? color.green('pass') : rule.waiting ? color.yellow('wait') : color.red('FAIL')} ${rule.rule}: ${rule.detail}${rule.fix && !rule.passed ? ` (run: ${rule.fix})` : ''}`);
    line('');
    line(`rollout: canary ${result.rollout.canary}, then batches of ${result.rollout.batch}${result.rollout.pause ? `, ${formatDuration(result.rollout.pause)} apart` : ''}; stops after more than ${result.rollout.maxFailures} failed host(s)`);
    result.batches.forEach((hosts, index) => line(`  ${index + 1}. ${hosts.join(', ')}`));
    line('');
    if (result.hosts.length === 0) line(`no enrolled hosts in ${env}`);
    else {
      line(
        table([
          ['HOST', 'NOW', 'ADDED', 'CHANGED', 'REMOVED', 'FETCH'],
          ...result.hosts.map((host) => [host.host, host.currentReleaseId ? shortId(host.currentReleaseId) : '-', String(host.added.count), String(host.changed.count), String(host.removed.count), `${formatBytes(host.fetchBytes)} (${host.fetchBlobs} blobs)`]),
        ]),
      );
      const first = result.hosts[0];
      if (first && first.added.count + first.changed.count + first.removed.count > 0 && result.hosts.every((host) => host.currentReleaseId === first.currentReleaseId)) {
        line('');
        for (const [mark, change] of [['+', first.added], ['~', first.changed], ['-', first.removed]] as const) {
          for (const path of change.paths) line(`  ${mark} ${path}`);
          if (change.count > change.paths.length) line(`  ${mark} … and ${change.count - change.paths.length} more`);
        }
      }
      for (const text of systemPlanLines(result.hosts)) line(text);
    }
  }
  if (result.verdict.kind === 'refused') throw new LockstepError('refused', result.verdict.reason ?? 'refused', { quiet: true });
}

/** `lockstep deploy RELEASE --to ENV`. */
export async function deploy(client: LockstepClient, release: string, env: string, reason: string | undefined, wait: boolean, override: boolean, options: OutputOptions): Promise<void> {
  const deployment = await client.deploy(release, env, reason, override);
  if (deployment.overrideReason && !options.json) process.stderr.write(color.yellow(`lockstep: policy overridden (${deployment.overrideReason}); this is audited and alerted\n`));
  await follow(client, deployment, wait, options);
}

/** `lockstep rollback ENV [--to RELEASE]`. */
export async function rollback(client: LockstepClient, env: string, to: string | undefined, reason: string | undefined, wait: boolean, options: OutputOptions): Promise<void> {
  const deployment = await client.rollback(env, to, reason);
  await follow(client, deployment, wait, options);
}

/** `lockstep deploy --follow ID`. */
export async function reattach(client: LockstepClient, id: number, options: OutputOptions): Promise<void> {
  await follow(client, await client.deployment(id), true, options);
}

/**
 * Shows a deployment's per-batch and per-host progress until it finishes.
 * Exit status: 0 succeeded, 4 failed (thrown as a 'failed' LockstepError).
 */
async function follow(client: LockstepClient, first: DeploymentView, wait: boolean, options: OutputOptions): Promise<void> {
  const what = `${first.kind === 'deploy' ? 'deployment' : first.kind} #${first.id}`;
  if (!wait) {
    if (options.json) json(first);
    else if (first.state === 'awaiting_approval') line(`${what}: ${first.version} (${shortId(first.releaseId)}) to ${first.env} is awaiting approval; approvers run: lockstep approve ${first.id}; follow it with: lockstep deploy --follow ${first.id}`);
    else line(`${what}: ${first.version} (${shortId(first.releaseId)}) to ${first.env} started; follow it with: lockstep deploy --follow ${first.id}`);
    return;
  }
  const progress = await openProgress(options.json === true);
  if (!options.json && progressMode(false) === 'lines') line(`${what}: ${first.version} (${shortId(first.releaseId)}) to ${first.env} on ${first.hosts.length} host${first.hosts.length === 1 ? '' : 's'}`);
  progress.update(first);
  let announced = false;
  const announce = (view: DeploymentView) => {
    if (view.state !== 'awaiting_approval' || announced || options.json) return;
    announced = true;
    line(`${what} is waiting for approval; approvers run: lockstep approve ${view.id}`);
  };
  announce(first);
  const view = await client.waitForDeployment(first, (next) => {
    announce(next);
    progress.update(next);
  });
  progress.finish(view);
  if (view.state === 'failed') throw new LockstepError('failed', `${what} failed: ${view.error ?? 'see lockstep history'}`, { quiet: options.json === true });
  if (view.state === 'rejected' || view.state === 'expired') throw new LockstepError('refused', `${what} was ${view.state}: ${view.error ?? ''}`, { quiet: options.json === true });
  if (!options.json) line(color.green(`${what} succeeded in ${formatDuration(view.durationMs ?? 0)}: ${view.env} runs ${view.version}${view.error ? ` (${view.error})` : ''}`));
}

/** `lockstep logs DEPLOYMENT [--host H]`: the output of hooks and health checks. */
export async function logs(client: LockstepClient, id: number, host: string | undefined, options: OutputOptions): Promise<void> {
  const result = await client.logs(id, host);
  if (options.json) return json(result.logs);
  if (result.logs.length === 0) return line(`no captured output for deployment #${id}${host ? ` on ${host}` : ''}`);
  for (const entry of result.logs) line(`${entry.at.slice(11, 23)} ${entry.host} ${color.dim(entry.source)} ${entry.text}`);
}

/** `lockstep release reject RELEASE --env ENV --reason TEXT`. */
export async function releaseReject(client: LockstepClient, ref: string, env: string, reason: string, options: OutputOptions): Promise<void> {
  await client.rejectRelease(ref, env, reason);
  if (options.json) return json({ release: ref, env, rejected: true });
  line(`release ${ref} is rejected in ${env}: it cannot be promoted onward from ${env}`);
}

/** `lockstep release unreject RELEASE --env ENV`. */
export async function releaseUnreject(client: LockstepClient, ref: string, env: string, reason: string | undefined, options: OutputOptions): Promise<void> {
  await client.unrejectRelease(ref, env, reason);
  if (options.json) return json({ release: ref, env, rejected: false });
  line(`release ${ref} is no longer rejected in ${env}`);
}

/** `lockstep approve DEPLOYMENT [--comment TEXT]`. */
export async function approve(client: LockstepClient, id: number, comment: string | undefined, options: OutputOptions): Promise<void> {
  const view = await client.approve(id, comment);
  if (options.json) return json(view);
  const granted = view.approvals.filter((approval) => approval.decision === 'approve').length;
  line(`approved deployment #${id} (${granted} approval${granted === 1 ? '' : 's'}); it is ${view.state.replace(/_/g, ' ')}`);
}

/** `lockstep reject DEPLOYMENT --reason TEXT`. */
export async function rejectDeployment(client: LockstepClient, id: number, reason: string, options: OutputOptions): Promise<void> {
  const view = await client.rejectDeployment(id, reason);
  if (options.json) return json(view);
  line(`rejected deployment #${id}: it will not run`);
}

/** `lockstep token create NAME --role ROLE [--env ENV...]`. */
export async function tokenCreate(client: LockstepClient, name: string, role: string, envs: readonly string[], options: OutputOptions): Promise<void> {
  const created = await client.createToken(name, role, envs);
  if (options.json) return json(created);
  line(`token ${created.name} (${created.role}${created.envs ? ` for ${created.envs.join(', ')}` : ', all environments'}); shown once, store it now:`);
  line(created.token);
}

/** `lockstep token list`. */
export async function tokenList(client: LockstepClient, options: OutputOptions): Promise<void> {
  const { tokens } = await client.listTokens();
  if (options.json) return json(tokens);
  line(table([['NAME', 'ROLE', 'ENVIRONMENTS', 'CREATED', 'STATE'], ...tokens.map((t) => [t.name, t.role, t.envs?.join(',') ?? 'all', ago(t.createdAt), t.revokedAt ? color.red(`revoked ${ago(t.revokedAt)}`) : color.green('active')])]));
}

/** `lockstep token revoke NAME`. */
export async function tokenRevoke(client: LockstepClient, name: string, options: OutputOptions): Promise<void> {
  await client.revokeToken(name);
  if (options.json) return json({ name, revoked: true });
  line(`token ${name} revoked`);
}

/** `lockstep changes [--env ENV] [--since 24h] [--json|--markdown]`. */
export async function changes(client: LockstepClient, env: string | undefined, since: string, options: OutputOptions & { markdown?: boolean | undefined }): Promise<void> {
  const result = await client.changes(env, since);
  if (options.json) return json(result);
  if (options.markdown) {
    line(`# Changes since ${result.since}${env ? ` in ${env}` : ''}`);
    line('');
    line('| when | env | who | what | why | result | way back |');
    line('| --- | --- | --- | --- | --- | --- | --- |');
    const cell = (text: string | null) => (text ?? '').replace(/\|/g, '\\|');
    for (const c of result.changes) line(`| ${c.at} | ${cell(c.env)} | ${cell(c.actor)} | ${cell(c.what)} | ${cell(c.why)} | ${cell(c.result)} | ${c.wayBack ? `\`${c.wayBack}\`` : ''} |`);
    return;
  }
  if (result.changes.length === 0) return line(`no changes since ${result.since}`);
  line(table([['WHEN', 'ENV', 'WHO', 'WHAT', 'WHY', 'RESULT', 'WAY BACK'], ...result.changes.map((c) => [c.at.replace('T', ' ').slice(0, 19), c.env ?? '-', c.actor, c.what, c.why ?? '', c.result, c.wayBack ?? ''])]));
}

/** `lockstep status [ENV] [--exit-code]`: with --exit-code, exit 1 while a host has diverged from its environment's release. */
export async function status(client: LockstepClient, env: string | undefined, options: OutputOptions & { readonly exitCode?: boolean | undefined }): Promise<void> {
  const result = await client.status(env);
  if (options.json) json(result);
  else if (result.app === null) line('no lockstep.yaml applied yet; run: lockstep init && lockstep apply -f lockstep.yaml');
  else {
    line(color.bold(`app ${result.app}`));
    for (const environment of result.environments) printEnvironment(environment);
    const pairs = result.parity ?? [];
    if (pairs.length > 0) line('');
    for (const pair of pairs) {
      const what = pair.checkedAt === null ? color.dim('not checked yet') : pair.undeclared === 0 ? color.green('no undeclared differences') : color.red(`${pair.undeclared} undeclared difference${pair.undeclared === 1 ? '' : 's'} since ${pair.since ?? '?'}`);
      line(`parity ${pair.a} vs ${pair.b}: ${what}${pair.checkedAt === null ? '' : color.dim(` (checked ${ago(pair.checkedAt)})`)}`);
    }
  }
  const diverged = result.environments.flatMap((environment) => environment.hosts.filter((host) => host.diverged === true).map((host) => `${host.name} (${environment.name})`));
  if (options.exitCode === true && diverged.length > 0) {
    throw new LockstepError('mismatch', `${diverged.length} host${diverged.length === 1 ? '' : 's'} diverged from the environment's release: ${diverged.join(', ')}; return them with: lockstep rollback ENV`, { quiet: options.json === true });
  }
}

function printEnvironment(environment: StatusResponse['environments'][number]): void {
  const current = environment.current ? `${environment.current.version} (${shortId(environment.current.id)})` : 'nothing deployed';
  line('');
  line(`${color.bold(environment.name)}${environment.promoteFrom ? color.dim(` <- ${environment.promoteFrom}`) : ''}: ${current}`);
  const firecall = environment.firecall;
  if (firecall) {
    const what = firecall.state === 'open' ? `fire call ${firecall.id} open until ${firecall.expiresAt}` : `fire call ${firecall.id} closed, not reconciled (deployments refused)`;
    line(`  ${color.red(what)} by ${firecall.requestedBy}: ${firecall.reason}`);
  }
  const last = environment.lastDeployment;
  if (last) {
    const state = last.state === 'succeeded' ? color.green(last.state) : ['failed', 'rejected', 'expired'].includes(last.state) ? color.red(last.state) : color.yellow(last.state.replace(/_/g, ' '));
    line(`  last ${last.kind} #${last.id}: ${last.version} ${state} ${ago(last.finishedAt ?? last.createdAt)} by ${last.requestedBy}${last.error ? ` (${last.error})` : ''}`);
  }
  if (environment.hosts.length === 0) line(`  no hosts; add one with: lockstep host add NAME --env ${environment.name}`);
  else {
    line(
      table(
        environment.hosts.map((host) => [
          `  ${host.name}`,
          hostState(host),
          host.version ?? '-',
          host.health === null ? color.dim('health unknown') : host.health.healthy ? color.green('healthy') : color.red(`unhealthy: ${host.health.detail}`),
          `seen ${ago(host.lastSeenAt)}`,
        ]),
      ),
    );
  }
}

function hostState(host: { enrolled: boolean; online: boolean; openDrift?: number; driftStale?: boolean; driftReportAt?: string | null; diverged?: boolean }): string {
  if (!host.enrolled) return color.yellow('not enrolled');
  // Its release is not the environment's: a late switch, a hand-edited `current`, a failed revert.
  const diverged = host.diverged ? ` ${color.red('diverged')}` : '';
  const drifted = host.openDrift ? ` ${color.red(`drifted (${host.openDrift})`)}` : '';
  // Online but silent about drift: its monitor is not working, so "not drifted" would be a guess.
  const unknown = host.driftStale ? ` ${color.yellow(`drift unknown (${host.driftReportAt ? `last report ${ago(host.driftReportAt)}` : 'no report yet'})`)}` : '';
  return (host.online ? color.green('online') : color.red('offline')) + diverged + drifted + unknown;
}

/** `lockstep history [ENV]`. */
export async function history(client: LockstepClient, env: string | undefined, limit: number, options: OutputOptions): Promise<void> {
  const { deployments } = await client.history(env, limit);
  if (options.json) return json(deployments);
  if (deployments.length === 0) return line('no deployments yet');
  line(
    table([
      ['ID', 'WHEN', 'ENV', 'KIND', 'RELEASE', 'RESULT', 'WHO', 'WHY'],
      ...deployments.map((d) => [
        `#${d.id}`,
        d.createdAt.replace('T', ' ').slice(0, 19),
        d.env,
        d.kind,
        `${d.version} (${shortId(d.releaseId)})`,
        d.state === 'failed' ? `failed: ${d.error ?? ''}` : d.state,
        d.requestedBy,
        d.reason ?? '',
      ]),
    ]),
  );
}

/** `lockstep audit log`. */
export async function auditLog(client: LockstepClient, limit: number, options: OutputOptions): Promise<void> {
  const { events } = await client.audit(0, 10000);
  const shown = events.slice(-limit);
  if (options.json) return json(shown);
  line(table([['SEQ', 'WHEN', 'ACTOR', 'ACTION', 'TARGET', 'DETAILS'], ...shown.map((e) => [String(e.seq), e.at.replace('T', ' ').slice(0, 19), e.actor, e.action, e.target, summarizeDetails(e.details)])]));
}

function summarizeDetails(details: unknown): string {
  const text = JSON.stringify(details);
  return text.length > 100 ? `${text.slice(0, 97)}...` : text;
}

