/** What an agent should know besides its tasks (hostSettings), derived from the applied lockstep.yaml. */
import { createHash } from 'node:crypto';
import type { HostSettings } from '../../api/schemas.js';
import type { Config } from '../../core/config.js';
import { DEFAULT_SCAN_INTERVALS, DEFAULT_SCAN_PRIORITY } from '../../core/drift.js';
import { canonicalJson } from '../../core/manifest.js';

/** The protocol's floor for scan intervals (hostSettings.scan: at least 1 s). */
const MIN_INTERVAL_MS = 1000;

/**
 * A host's settings in `env` under `config` (undefined: nothing applied yet).
 * The revision is a digest of everything else, so it changes exactly when the settings do.
 */
export function hostSettingsOf(config: Config | undefined, env: string): HostSettings {
  const content = {
    env,
    deployTo: config?.deploy_to ?? null,
    watch: (config?.watch ?? []).map((spec) => ({ path: spec.path, include: spec.include, exclude: spec.exclude })),
    scan: {
      periodicMs: Math.max(MIN_INTERVAL_MS, config?.drift.scan_interval ?? DEFAULT_SCAN_INTERVALS.periodicMs),
      fullMs: Math.max(MIN_INTERVAL_MS, config?.drift.full_scan_interval ?? DEFAULT_SCAN_INTERVALS.fullMs),
      nice: config?.drift.scan.nice ?? DEFAULT_SCAN_PRIORITY.nice,
      ionice: config?.drift.scan.ionice ?? DEFAULT_SCAN_PRIORITY.ionice,
      maxReadBytesPerSecond: scanReadCap(config),
    },
  };
  const revision = createHash('sha256').update(canonicalJson(content)).digest('hex').slice(0, 16);
  return { revision, ...content };
}

/** drift.scan.max_read_mb_s in bytes per second (MB = 10^6 bytes), at least 1; null: no cap. */
function scanReadCap(config: Config | undefined): number | null {
  const mbPerSecond = config?.drift.scan.max_read_mb_s;
  return mbPerSecond === undefined ? DEFAULT_SCAN_PRIORITY.maxReadBytesPerSecond : Math.max(1, Math.round(mbPerSecond * 1e6));
}

/** The directory release-scope drift paths start with: DEPLOY_TO/current/. */
export function releaseScopePrefix(deployTo: string): string {
  return `${deployTo === '/' ? '' : deployTo}/current/`;
}

/** Matches a path in a kept release tree: DEPLOY_TO/releases/<release id>/<path>. */
export function keptReleasePath(deployTo: string): RegExp {
  const base = (deployTo === '/' ? '' : deployTo).replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${base}/releases/[0-9a-f]{64}/.+`);
}
