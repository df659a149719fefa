/** The `lockstep drift` command tree (commander), loading its implementation only when run. */
import { Option, type Command } from 'commander';
import type { LockstepClient } from '../client/lockstep-client.js';

const jsonOption = () => new Option('--json', 'print JSON for scripts');
const load = () => import('./drift-commands.js');

/** Adds `release capture` to the `release` command (its implementation lives with the other agent commands). */
export function addCaptureCommand(release: Command, client: () => LockstepClient): void {
  release
    .command('capture <host>')
    .description("deployer: make a release from a host's installed packages (with the .deb files of its apt cache) and files, to promote like any release (exit 4 when the host failed)")
    .requiredOption('--version <version>', 'version of the new release')
    .option('--packages', "capture the host's whole package set (names, versions, .deb files from ROOT/var/cache/apt/archives where present)")
    .option('--path <path...>', 'host files to capture as managed files (absolute paths)')
    .addOption(jsonOption())
    .action(async (host: string, options: { version: string; packages?: boolean; path?: string[]; json?: boolean }) =>
      (await load()).releaseCapture(client(), host, options.version, options.packages === true, options.path ?? [], options),
    );
}

/** Adds `drift`, `drift scan`, `drift revert`, `drift accept` and `drift adopt` to `root`. */
export function addDriftCommands(root: Command, client: () => LockstepClient): void {
  const drift = root
    .command('drift')
    .argument('[target]', 'an environment or a host (default: every host)')
    .description('list drift: changes to hosts that no deployment made (open items; --all for closed ones too)')
    .option('--all', 'also list reverted, accepted, adopted and resolved items')
    .option('--exit-code', 'exit 1 when there is open drift (like git diff --exit-code), for scripts and monitoring')
    .addOption(jsonOption())
    .action(async (target: string | undefined, options: { all?: boolean; json?: boolean; exitCode?: boolean }) => (await load()).driftList(client(), target, options.all === true, options));
  drift
    .command('scan <host>')
    .description('scan a host now and wait for its report (exit 4 when the scan failed)')
    .option('--full', 're-hash every file instead of trusting the stat cache')
    .addOption(jsonOption())
    .action(async (host: string, options: { full?: boolean; json?: boolean }) => (await load()).driftScan(client(), host, options.full === true, options));
  drift
    .command('revert <target>')
    .description('put a host (or every host of an environment) back to its baseline and wait (exit 4 when a host failed)')
    .option('--path <path...>', 'only these drifted paths (absolute host paths)')
    .option('--reason <text>', 'why (recorded)')
    .addOption(jsonOption())
    .action(async (target: string, options: { path?: string[]; reason?: string; json?: boolean }) => (await load()).driftRevert(client(), target, options.path, options.reason, options));
  drift
    .command('accept <host>')
    .description("admin: make the current state of watched paths, or a package's new version (--path package:NAME), the baseline (release files must be adopted instead)")
    .requiredOption('--path <path...>', 'the drifted watched paths (or package:NAME) to accept')
    .requiredOption('--reason <text>', 'why (recorded)')
    .addOption(jsonOption())
    .action(async (host: string, options: { path: string[]; reason: string; json?: boolean }) => (await load()).driftAccept(client(), host, options.path, options.reason, options));
  drift
    .command('adopt <host>')
    .description("make a new release from the host's release plus its drifted release files; it goes through the promotion gate like any other")
    .requiredOption('--version <version>', 'version of the new release')
    .requiredOption('--reason <text>', 'why (recorded)')
    .addOption(jsonOption())
    .action(async (host: string, options: { version: string; reason: string; json?: boolean }) => (await load()).driftAdopt(client(), host, options.version, options.reason, options));
}
