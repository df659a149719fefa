/**
 * Where Lockstep runs a command about a release (deployment hooks, exec
 * health checks, during a deployment and between them) and what it tells the
 * command: always the release's own directory, so `./bin/check` means the
 * release's file and not whatever the agent's working directory holds.
 */
import type { DeployLayout } from './deploy-layout.js';
import { releaseDir } from './deploy-layout.js';

/** A working directory and the variables added to the agent's environment. */
export interface ReleaseProcess {
  readonly cwd: string;
  readonly env: Readonly<Record<string, string>>;
}

/** The directory and LOCKSTEP_* variables of one release on this host (documented in docs/deployments.md). */
export function releaseProcess(options: { readonly root: string; readonly layout: DeployLayout; readonly releaseId: string; readonly env: string; readonly host: string }): ReleaseProcess {
  const dir = releaseDir(options.layout, options.releaseId);
  return {
    cwd: dir,
    env: {
      LOCKSTEP_ROOT: options.root,
      LOCKSTEP_ENV: options.env,
      LOCKSTEP_HOST: options.host,
      LOCKSTEP_DEPLOY_TO: options.layout.deployTo,
      LOCKSTEP_RELEASE_ID: options.releaseId,
      LOCKSTEP_RELEASE_DIR: dir,
    },
  };
}
