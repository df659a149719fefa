/**
 * The pure half of recording a drift report: which findings open new items,
 * which open items are seen again (and whether they changed), and which open
 * items are gone and in what state they close. No I/O.
 */
import type { DriftFinding, DriftReport } from '../../api/schemas.js';

/** An open item as reconciliation needs it. */
export interface OpenDriftItem {
  readonly id: number;
  readonly scope: string;
  readonly path: string;
  readonly kinds: string;
  readonly expected: string | null;
  readonly actual: string | null;
  readonly adoptedInto: string | null;
}

/** The states a gone item closes in. */
export type ClosedState = 'reverted' | 'accepted' | 'adopted' | 'resolved';

/** What a report's cause says about items that went away. */
export type CloseCause =
  | { readonly kind: 'scan' | 'watch' }
  | { readonly kind: 'deployment'; readonly deploymentId: number }
  /** A revert or accept command; `paths` null: every item. */
  | { readonly kind: 'revert' | 'accept'; readonly paths: readonly string[] | null }
  | { readonly kind: 'command' };

/** The changes a report makes to a host's items. */
export interface DriftReconciliation {
  readonly opened: readonly DriftFinding[];
  /** Open items seen again whose kinds, expected or actual changed. */
  readonly changed: readonly { readonly id: number; readonly finding: DriftFinding }[];
  readonly closed: readonly { readonly id: number; readonly path: string; readonly state: ClosedState }[];
}

const keyOf = (scope: string, path: string) => `${scope}\u0000${path}`;

/** The stored JSON of a finding's fields, to compare with what an item holds. */
export function storedFields(finding: DriftFinding): { kinds: string; expected: string | null; actual: string | null } {
  return {
    kinds: JSON.stringify(finding.kinds),
    expected: finding.expected ? JSON.stringify(finding.expected) : null,
    actual: finding.actual ? JSON.stringify(finding.actual) : null,
  };
}

/**
 * Reconciles a host's open items with the complete set of findings of a report.
 * A truncated report closes nothing: an item missing from it may still be there.
 * An item adopted into the release the host now runs closes as `adopted`,
 * whatever made it go.
 */
export function reconcileDrift(open: readonly OpenDriftItem[], report: Pick<DriftReport, 'findings' | 'truncated' | 'releaseId'>, cause: CloseCause): DriftReconciliation {
  const openByKey = new Map(open.map((item) => [keyOf(item.scope, item.path), item]));
  const reported = new Set<string>();
  const opened: DriftFinding[] = [];
  const changed: { id: number; finding: DriftFinding }[] = [];
  for (const finding of report.findings) {
    const key = keyOf(finding.scope, finding.path);
    if (reported.has(key)) continue;
    reported.add(key);
    const item = openByKey.get(key);
    if (!item) {
      opened.push(finding);
      continue;
    }
    const fields = storedFields(finding);
    if (fields.kinds !== item.kinds || fields.expected !== item.expected || fields.actual !== item.actual) changed.push({ id: item.id, finding });
  }
  const closed = report.truncated
    ? []
    : open.filter((item) => !reported.has(keyOf(item.scope, item.path))).map((item) => ({ id: item.id, path: item.path, state: closedState(item, report.releaseId, cause) }));
  return { opened, changed, closed };
}

function closedState(item: OpenDriftItem, runningRelease: string | null, cause: CloseCause): ClosedState {
  if (item.adoptedInto !== null && item.adoptedInto === runningRelease) return 'adopted';
  if (cause.kind === 'revert' || cause.kind === 'accept') {
    const covered = cause.paths === null || cause.paths.includes(item.path);
    if (covered) return cause.kind === 'revert' ? 'reverted' : 'accepted';
  }
  return 'resolved';
}
