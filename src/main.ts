#!/usr/bin/env node
/**
 * The `lockstep` command: the one entry that turns errors into messages and
 * exit codes. `server`, `agent` and `demo` load their composition roots
 * lazily, so the everyday commands start fast.
 */
import { Command, CommanderError, Option } from 'commander';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LockstepClient } from './client/lockstep-client.js';
import * as commands from './cli/commands.js';
import { errorBody } from './api/errors.js';
import { cannotRead, EXIT_CODES, ifMissingSync, LockstepError, type ErrorKind } from './core/errors.js';
import { addCaptureCommand, addDriftCommands } from './cli/drift-program.js';
import { trustFromSettings, type TlsTrust } from './api/tls-trust.js';

const VERSION = '0.1.0';

/** The CLI's pin of the server's CA (`lockstep --ca FILE`, LOCKSTEP_CA, `--ca-fingerprint`, LOCKSTEP_CA_FINGERPRINT), read before a command runs. */
let serverTrust: TlsTrust | undefined;

function client(): LockstepClient {
  const server = process.env.LOCKSTEP_SERVER ?? 'http://127.0.0.1:7400';
  const token = process.env.LOCKSTEP_TOKEN ?? readDefaultToken();
  if (!token) throw new LockstepError('unauthorized', 'LOCKSTEP_TOKEN is not set; export it (the admin token is in DATA_DIR/admin.token)');
  return new LockstepClient({ server, token, trust: serverTrust });
}

/** Convenience for the machine running the server: ./lockstep-data/admin.token when LOCKSTEP_SERVER is not set. */
function readDefaultToken(): string | undefined {
  if (process.env.LOCKSTEP_SERVER) return undefined;
  const file = join('lockstep-data', 'admin.token');
  try {
    return ifMissingSync(() => readFileSync(file, 'utf8'))?.trim();
  } catch (error) {
    throw cannotRead(file, error, 'fix its permissions or export LOCKSTEP_TOKEN');
  }
}

const jsonOption = () => new Option('--json', 'print JSON for scripts');

function program(): Command {
  const root = new Command('lockstep')
    .description('Immutable releases, gated promotion and one-second rollback for production hosts')
    .version(VERSION)
    .enablePositionalOptions()
    // Commander's own errors are printed by main() in Lockstep's one-line format, like every other error.
    .configureOutput({ outputError: () => undefined })
    .exitOverride()
    // Before the command: `lockstep --ca FILE status` (options of the program go before the command).
    .addOption(new Option('--ca <file>', "trust the server's certificate only if it chains to this PEM CA certificate").env('LOCKSTEP_CA'))
    .addOption(new Option('--ca-fingerprint <sha256:hex>', "trust the server's certificate only if its chain holds the CA with this fingerprint (printed by `lockstep host add`)").env('LOCKSTEP_CA_FINGERPRINT'))
    .hook('preAction', async (command, action) => {
      // The server and the agent take their own TLS flags.
      if (['server', 'agent', 'demo'].includes(action.name())) return;
      const options = command.opts<{ ca?: string; caFingerprint?: string }>();
      serverTrust = await trustFromSettings({ caFile: options.ca, fingerprint: options.caFingerprint }, { caFile: 'LOCKSTEP_CA', fingerprint: 'LOCKSTEP_CA_FINGERPRINT' });
    });

  root
    .command('server')
    .description('run the control plane (HTTP API, state, blob store)')
    .option('--data-dir <dir>', 'data directory', './lockstep-data')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:7400')
    .option('--database <url>', 'postgres://… to use PostgreSQL (default: SQLite in the data dir)')
    .option('--checkpoint-every <n>', 'sign an audit checkpoint at least every N events', '100')
    .option('--checkpoint-interval <duration>', '…and once a new audit event is this old', '5m')
    .option('--audit-anchor <file>', 'append every checkpoint to FILE, ideally on another disk or host (default: DATA_DIR/audit-anchor.jsonl)')
    .option('--offline-after <duration>', 'a host whose agent is not heard from this long is offline (status, alerts)', '40s')
    .option('--trust-proxy', 'take client addresses from X-Forwarded-For (only behind a reverse proxy that sets it)')
    .option('--tls-cert <file>', 'serve HTTPS with this certificate chain (PEM: the server certificate, then its CA chain)')
    .option('--tls-key <file>', 'the private key of --tls-cert (PEM)')
    .option('--tls-own-ca', "serve HTTPS with the server's own CA (made in DATA_DIR/tls) even on a loopback --listen; the default on any other")
    .option('--insecure-http', 'serve plain HTTP on a non-loopback --listen (tokens cross the network in clear; logged as a warning)')
    .option('--blob-quota-mb <mib>', 'each deployer token may hold this many MiB of blobs uploaded outside an upload session that no release references', '256')
    .option('--drift-quota-mb <mib>', "each host's agent may hold this many MiB of drifted files for its open drift items", '256')
    .option('--gc-grace <duration>', 'gc keeps an unreferenced blob until it is this old', '24h')
    .option('--gc-interval <duration>', 'how often the server runs gc itself (0: never)', '1h')
    .action(async (options: { dataDir: string; listen: string; database?: string; checkpointEvery?: string; checkpointInterval?: string; auditAnchor?: string; offlineAfter?: string; trustProxy?: boolean; tlsCert?: string; tlsKey?: string; tlsOwnCa?: boolean; insecureHttp?: boolean; blobQuotaMb?: string; driftQuotaMb?: string; gcGrace?: string; gcInterval?: string }) => {
      const { runServerCommand } = await import('./server/command.js');
      await runServerCommand(options);
    });

  root
    .command('agent')
    .description('run the host agent: enroll, then take deployments for this host')
    .requiredOption('--server <url>', 'URL of the Lockstep server')
    .option('--token <token>', 'one-time enrollment token (not needed once enrolled)')
    .option('--root <dir>', 'treat DIR as / for every host path', '/')
    .option('--state-dir <dir>', 'agent state (credential, blob cache); default ROOT/var/lib/lockstep-agent')
    .addOption(new Option('--sshd-log <file>', 'the sshd log to collect fire-call logins from, under ROOT (default /var/log/auth.log)').env('LOCKSTEP_SSHD_LOG'))
    .option('--ca-fingerprint <sha256:hex>', "pin the server's CA by the fingerprint `lockstep host add` prints (needed for an https:// server until its CA is stored)")
    .option('--ca <file>', "pin the server's CA given as a PEM certificate file")
    .action(async (options: { server: string; token?: string; root: string; stateDir?: string; sshdLog?: string; caFingerprint?: string; ca?: string }) => {
      const { runAgentCommand } = await import('./agent/command.js');
      await runAgentCommand(options);
    });

  root
    .command('demo')
    .description('start a server and a local sandbox fleet (development 1 host, test 2, production 3); what `npm start` runs')
    .option('--data-dir <dir>', 'data directory', './lockstep-data')
    .option('--listen <host:port>', 'address to listen on', '127.0.0.1:7400')
    .action(async (options: { dataDir: string; listen: string }) => {
      const { runDemo } = await import('./demo/demo.js');
      await runDemo(options);
    });

  root
    .command('init')
    .description('write a commented starter lockstep.yaml')
    .option('-f, --file <file>', 'file to write', 'lockstep.yaml')
    .option('--force', 'overwrite an existing file')
    .addOption(jsonOption())
    .action((options: { file: string; force?: boolean; json?: boolean }) => commands.init(options.file, options.force === true, options));

  root
    .command('apply')
    .description('validate lockstep.yaml and store it on the server (an audit event)')
    .requiredOption('-f, --file <file>', 'the configuration file')
    .addOption(jsonOption())
    .action((options: { file: string; json?: boolean }) => commands.apply(client(), options.file, options));

  const release = root.command('release').description('create and inspect releases');
  release
    .command('create <dir>')
    .description('hash DIR, upload only the content the server lacks, and print the release id')
    .requiredOption('--version <version>', 'version of the release (immutable once created)')
    .option('--app <name>', 'application (default: the app of the applied lockstep.yaml)')
    .addOption(jsonOption())
    .action((dir: string, options: { version: string; app?: string; json?: boolean }) => commands.releaseCreate(client(), dir, options.version, options.app, options));
  release
    .command('list')
    .description('list releases, newest first')
    .addOption(jsonOption())
    .action((options: { json?: boolean }) => commands.releaseList(client(), options));
  release
    .command('show <release>')
    .description('show a release (full id, unique id prefix, or app@version)')
    .addOption(jsonOption())
    .action((ref: string, options: { json?: boolean }) => commands.releaseShow(client(), ref, options));

  release
    .command('reject <release>')
    .description('mark a release rejected in an environment: it cannot be promoted onward from there')
    .requiredOption('--env <env>', 'the environment')
    .requiredOption('--reason <text>', 'why (recorded)')
    .addOption(jsonOption())
    .action((ref: string, options: { env: string; reason: string; json?: boolean }) => commands.releaseReject(client(), ref, options.env, options.reason, options));
  release
    .command('unreject <release>')
    .description('lift a rejection (admin; audited)')
    .requiredOption('--env <env>', 'the environment')
    .option('--reason <text>', 'why (recorded)')
    .addOption(jsonOption())
    .action((ref: string, options: { env: string; reason?: string; json?: boolean }) => commands.releaseUnreject(client(), ref, options.env, options.reason, options));
  addCaptureCommand(release, client);

  const host = root.command('host').description('register hosts and list them');
  host
    .command('add <name>')
    .description('register a host and print its one-time enrollment token')
    .requiredOption('--env <env>', 'environment of the host')
    .addOption(jsonOption())
    .action((name: string, options: { env: string; json?: boolean }) => commands.hostAdd(client(), name, options.env, options));
  host
    .command('list')
    .description('list hosts')
    .addOption(jsonOption())
    .action((options: { json?: boolean }) => commands.hostList(client(), options));

  root
    .command('plan <release>')
    .description('show whether a release may enter an environment, changing nothing (exit 3 when refused)')
    .requiredOption('--to <env>', 'target environment')
    .addOption(jsonOption())
    .action((ref: string, options: { to: string; json?: boolean }) => commands.plan(client(), ref, options.to, options));

  root
    .command('deploy [release]')
    .description('deploy a release to an environment and wait (exit 0 succeeded, 3 refused, 4 failed)')
    .option('--to <env>', 'target environment')
    .option('--reason <text>', 'why (recorded in history and the audit log)')
    .option('--no-wait', 'return once the deployment started')
    .option('--follow <id>', 'reattach to a running deployment')
    .option('--override', 'admin: proceed past refused policy rules (needs --reason; audited and alerted)')
    .addOption(jsonOption())
    .action(async (ref: string | undefined, options: { to?: string; reason?: string; wait: boolean; follow?: string; override?: boolean; json?: boolean }) => {
      if (options.follow !== undefined) {
        const id = Number(options.follow.replace(/^#/, ''));
        if (!Number.isInteger(id) || id <= 0) throw new LockstepError('bad-input', `--follow "${options.follow}" is not a deployment id`);
        return commands.reattach(client(), id, options);
      }
      if (ref === undefined || options.to === undefined) throw new LockstepError('bad-input', 'usage: lockstep deploy RELEASE --to ENV (or --follow ID)');
      return commands.deploy(client(), ref, options.to, options.reason, options.wait, options.override === true, options);
    });

  root
    .command('approve <deployment>')
    .description('approve a deployment waiting for approval (approver role; not its requester nor the release creator)')
    .option('--comment <text>', 'recorded with the approval')
    .addOption(jsonOption())
    .action((id: string, options: { comment?: string; json?: boolean }) => commands.approve(client(), positive(id.replace(/^#/, ''), 'DEPLOYMENT'), options.comment, options));

  root
    .command('reject <deployment>')
    .description('reject a deployment waiting for approval: it will not run')
    .requiredOption('--reason <text>', 'why (recorded)')
    .addOption(jsonOption())
    .action((id: string, options: { reason: string; json?: boolean }) => commands.rejectDeployment(client(), positive(id.replace(/^#/, ''), 'DEPLOYMENT'), options.reason, options));

  const token = root.command('token').description('tokens for people and scripts (admin)');
  token
    .command('create <name>')
    .description('create a token; it is shown once and only its hash is stored')
    .requiredOption('--role <role>', 'viewer, deployer, approver or admin')
    .option('--env <env...>', 'environments it may act on (default: all)')
    .addOption(jsonOption())
    .action((name: string, options: { role: string; env?: string[]; json?: boolean }) => {
      if (!['viewer', 'deployer', 'approver', 'admin'].includes(options.role)) throw new LockstepError('bad-input', `--role must be viewer, deployer, approver or admin, not "${options.role}"`);
      return commands.tokenCreate(client(), name, options.role, options.env ?? [], options);
    });
  token
    .command('list')
    .description('list tokens (never their secrets)')
    .addOption(jsonOption())
    .action((options: { json?: boolean }) => commands.tokenList(client(), options));
  token
    .command('revoke <name>')
    .description('revoke a token at once')
    .addOption(jsonOption())
    .action((name: string, options: { json?: boolean }) => commands.tokenRevoke(client(), name, options));

  root
    .command('changes')
    .description('what changed recently: deployments, rollbacks, config and policy changes, with who, why, result and the way back')
    .option('--env <env>', 'only this environment')
    .option('--since <when>', 'a duration (24h) or a time', '24h')
    .option('--markdown', 'print a Markdown table (for an incident report)')
    .addOption(jsonOption())
    .action((options: { env?: string; since: string; markdown?: boolean; json?: boolean }) => commands.changes(client(), options.env, options.since, options));

  root
    .command('rollback <env>')
    .description("return every host of ENV to its previous known-good release, using the tree still on disk")
    .option('--to <release>', 'a specific known-good release')
    .option('--reason <text>', 'why (recorded)')
    .option('--no-wait', 'return once the rollback started')
    .addOption(jsonOption())
    .action((env: string, options: { to?: string; reason?: string; wait: boolean; json?: boolean }) => commands.rollback(client(), env, options.to, options.reason, options.wait, options));

  root
    .command('logs <deployment>')
    .description("show the output of a deployment's hooks and health checks")
    .option('--host <host>', 'only this host')
    .addOption(jsonOption())
    .action((id: string, options: { host?: string; json?: boolean }) => commands.logs(client(), positive(id.replace(/^#/, ''), 'DEPLOYMENT'), options.host, options));

  root
    .command('status [env]')
    .description('environments in promotion order: current release, hosts, last deployment; hosts off their environment\'s release are marked diverged')
    .option('--exit-code', "exit 1 when a host has diverged from its environment's release, for monitoring checks")
    .addOption(jsonOption())
    .action((env: string | undefined, options: { json?: boolean; exitCode?: boolean }) => commands.status(client(), env, options));

  root
    .command('history [env]')
    .description('deployments and rollbacks: who, why, when, result')
    .option('--limit <n>', 'how many', '50')
    .addOption(jsonOption())
    .action((env: string | undefined, options: { limit: string; json?: boolean }) => commands.history(client(), env, positive(options.limit, '--limit'), options));

  root
    .command('gc')
    .description("remove stored blobs that no release, open drift item or open upload session references and that are older than the server's --gc-grace (admin; audited as blob.gc)")
    .option('--dry-run', 'only list what would be removed')
    .addOption(jsonOption())
    .action((options: { dryRun?: boolean; json?: boolean }) => commands.gc(client(), options));

  root
    .command('parity <a> <b>')
    .description('compare two environments (e.g. test production): active releases, vars, host facts and packages, hosts within each; exit 0 when only declared differences remain, 1 otherwise')
    .addOption(jsonOption())
    .action(async (a: string, b: string, options: { json?: boolean }) => (await import('./cli/parity-commands.js')).parity(client(), a, b, options));

  addDriftCommands(root, client);

  const audit = root.command('audit').description('the audit trail');
  audit
    .command('log')
    .description('list audit events, oldest first')
    .option('--limit <n>', 'how many of the newest', '1000')
    .addOption(jsonOption())
    .action((options: { limit: string; json?: boolean }) => commands.auditLog(client(), positive(options.limit, '--limit'), options));
  audit
    .command('pubkey')
    .description("print the server's checkpoint signing public key, one line to pass to --pubkey")
    .addOption(jsonOption())
    .action(async (options: { json?: boolean }) => (await import('./cli/audit-commands.js')).auditPubkey(client(), options));
  audit
    .command('export')
    .description('write the audit log with its signed checkpoints as JSON lines to stdout')
    .option('--since <time>', 'only events since TIME (ISO time, or a duration such as 24h meaning that long ago), anchored at the checkpoint before them')
    .action(async (options: { since?: string }) => (await import('./cli/audit-commands.js')).auditExport(client(), options.since));
  audit
    .command('verify [file]')
    .description('check the hash chain and signed checkpoints of an export FILE offline, or of the live server without FILE (exit 0 verified, 4 failed)')
    .option('--pubkey <key>', "the server's public key (the line `lockstep audit pubkey` prints, or a file holding it); required with FILE")
    .option('--anchor <file>', 'the anchor file: also prove the log was not truncated or rewritten behind it (live default: the server\'s)')
    .option('--max-unsigned-age <duration>', 'how old an event may be with no checkpoint covering it (default: twice the signed checkpoint interval)')
    .addOption(jsonOption())
    .action(async (file: string | undefined, options: { pubkey?: string; anchor?: string; maxUnsignedAge?: string; json?: boolean }) =>
      (await import('./cli/audit-commands.js')).auditVerify(file, options, client),
    );

  const secret = root.command('secret').description("an environment's secrets: encrypted on the server, delivered only to that environment's hosts, never printed");
  const secretCommands = () => import('./cli/secret-commands.js');
  secret
    .command('set <env> <name>')
    .description('set a secret (admin): the value from standard input (one trailing line break dropped) or --from-file; a new version each time')
    .option('--from-file <file>', 'read the value from FILE, exactly as it is')
    .addOption(jsonOption())
    .action(async (env: string, name: string, options: { fromFile?: string; json?: boolean }) =>
      (await secretCommands()).secretSet(client(), env, name, { fromFile: options.fromFile, stdin: process.stdin }, options),
    );
  secret
    .command('list <env>')
    .description("list an environment's secrets: names, versions, who set them and when (never values)")
    .addOption(jsonOption())
    .action(async (env: string, options: { json?: boolean }) => (await secretCommands()).secretList(client(), env, options));
  secret
    .command('rm <env> <name>')
    .description('remove a secret (admin); hosts drop it at their next deployment')
    .addOption(jsonOption())
    .action(async (env: string, name: string, options: { json?: boolean }) => (await secretCommands()).secretRm(client(), env, name, options));

  const firecall = root.command('firecall').description('emergency access: a short-lived, announced, recorded SSH certificate for an environment\'s hosts');
  const firecallCommands = () => import('./cli/firecall-commands.js');
  firecall
    .command('ca <env>')
    .description("print the environment's SSH user CA public key (created on first use)")
    .addOption(jsonOption())
    .action(async (env: string, options: { json?: boolean }) => (await firecallCommands()).firecallCa(client(), env, options));
  firecall
    .command('open <env>')
    .description('sign a certificate for your public key, announce it and record everything done with it')
    .requiredOption('--reason <text>', 'why (announced and recorded)')
    .requiredOption('--pubkey <file>', 'your OpenSSH public key (ed25519 or rsa)')
    .option('--ttl <duration>', 'how long the certificate is valid (default 30m, at most the policy\'s max_ttl)')
    .option('--host <host...>', 'only these hosts accept it (default: every host of ENV)')
    .option('--from <cidr>', 'only from this address or CIDR block')
    .option('--out <file>', 'where to write the certificate (default: next to the key, KEY-cert.pub)')
    .option('--override', 'admin only: open at once where firecall.require_approval asks for an approver (alerted and audited; --reason says why)')
    .addOption(jsonOption())
    .action(async (env: string, options: { reason: string; pubkey: string; ttl?: string; host?: string[]; from?: string; out?: string; override?: boolean; json?: boolean }) =>
      (await firecallCommands()).firecallOpen(client(), env, options),
    );
  firecall
    .command('approve <id>')
    .description('approve a fire call awaiting approval (approver or admin, not its requester): its certificate is signed now')
    .addOption(jsonOption())
    .action(async (id: string, options: { json?: boolean }) => (await firecallCommands()).firecallApprove(client(), positive(id, 'ID'), options));
  firecall
    .command('cert <id>')
    .description('the certificate of an approved fire call: printed, or written to --out')
    .option('--out <file>', 'write it here (ssh finds KEY-cert.pub next to KEY)')
    .addOption(jsonOption())
    .action(async (id: string, options: { out?: string; json?: boolean }) => (await firecallCommands()).firecallCert(client(), positive(id, 'ID'), options));
  firecall
    .command('close <id>')
    .description('revoke the certificate on every host at once and end its sessions (exit 4 when a host online did not confirm)')
    .option('--note <text>', 'what was done (recorded; required where firecall.require_note is set)')
    .addOption(jsonOption())
    .action(async (id: string, options: { note?: string; json?: boolean }) => (await firecallCommands()).firecallClose(client(), positive(id, 'ID'), options.note, options));
  firecall
    .command('list')
    .description('fire calls, newest first')
    .option('--env <env>', 'only this environment')
    .addOption(jsonOption())
    .action(async (options: { env?: string; json?: boolean }) => (await firecallCommands()).firecallList(client(), options.env, options));
  firecall
    .command('show <id>')
    .description('who logged in where and when, what sshd refused, and the terminal transcripts')
    .addOption(jsonOption())
    .action(async (id: string, options: { json?: boolean }) => (await firecallCommands()).firecallShow(client(), positive(id, 'ID'), options));
  firecall
    .command('reconcile <id>')
    .description('bring the changes made under a closed fire call back: --revert, or --adopt --version V (a release that goes through test)')
    .option('--revert', 'restore the baseline on the hosts')
    .option('--adopt', 'make a release of the changes')
    .option('--version <version>', 'with --adopt: the version of that release')
    .addOption(jsonOption())
    .action(async (id: string, options: { revert?: boolean; adopt?: boolean; version?: string; json?: boolean }) => (await firecallCommands()).firecallReconcile(client(), positive(id, 'ID'), options));

  return root;
}

function positive(text: string, flag: string): number {
  const value = Number(text);
  if (!Number.isInteger(value) || value <= 0) throw new LockstepError('bad-input', `${flag} must be a positive integer, not "${text}"`);
  return value;
}

/** How an error reaches the person or script: one `lockstep: …` line, or a JSON object on stderr with --json. */
function printError(argv: readonly string[], kind: ErrorKind | 'internal', message: string, hint?: string): void {
  if (argv.includes('--json')) {
    process.stderr.write(`${JSON.stringify(errorBody(kind, message, { hint }))}\n`);
    return;
  }
  process.stderr.write(`lockstep: ${message}${hint === undefined ? '' : `; ${hint}`}\n`);
}

/** The command words of `argv` that name (sub)commands of `root`, e.g. "lockstep release create". */
function commandPath(root: Command, argv: readonly string[]): string {
  const names = ['lockstep'];
  let command = root;
  for (const word of argv.slice(2)) {
    if (word.startsWith('-')) break;
    const next = command.commands.find((sub) => sub.name() === word || sub.aliases().includes(word));
    if (next === undefined) break;
    names.push(next.name());
    command = next;
  }
  return names.join(' ');
}

/** Commander's message ("error: unknown command 'x'\n(Did you mean y?)") as one line. */
function commanderMessage(error: CommanderError): string {
  return error.message
    .replace(/^error: /, '')
    .split('\n')
    .map((part) => part.trim())
    .filter((part) => part !== '')
    .map((part) => part.replace(/^\((Did you mean .*)\)$/, (_, text: string) => `(${text.charAt(0).toLowerCase()}${text.slice(1)})`))
    .join(' ');
}

async function main(argv: string[]): Promise<number> {
  const root = program();
  try {
    await root.parseAsync(argv);
    return EXIT_CODES.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version print themselves and exit 0; `lockstep release` without a subcommand printed its help.
      if (error.exitCode === 0 || error.code === 'commander.help' || error.code === 'commander.helpDisplayed' || error.code === 'commander.version') return error.exitCode === 0 ? 0 : EXIT_CODES['bad-input'];
      printError(argv, 'bad-input', commanderMessage(error), `see \`${commandPath(root, argv)} --help\``);
      return EXIT_CODES['bad-input'];
    }
    if (error instanceof LockstepError) {
      const quiet = (error.details as { quiet?: boolean } | undefined)?.quiet === true;
      if (!quiet) printError(argv, error.kind, error.message);
      return EXIT_CODES[error.kind];
    }
    printError(argv, 'internal', `internal error: ${(error as Error).message}`);
    if (process.env.LOCKSTEP_DEBUG) process.stderr.write(`${(error as Error).stack ?? ''}\n`);
    return EXIT_CODES.internal;
  }
}

// `lockstep status | head` closes the pipe early: that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(process.exitCode ?? 0);
  throw error;
});

process.exitCode = await main(process.argv);
