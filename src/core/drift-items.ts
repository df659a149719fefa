/**
 * The life of a drift item and of the commands that act on drift, as const
 * lists with the unions built from them (store rows and wire schemas share them).
 */

/** `release`: a path of the active release; `watch`: a path under a watched path; `package`: an OS package (path `package:NAME`). */
export const DRIFT_SCOPES = ['release', 'watch', 'package'] as const;
/** Where a drifted path lies (see DRIFT_SCOPES). */
export type DriftScope = (typeof DRIFT_SCOPES)[number];

/** open until the path matches its baseline again; then closed as reverted, accepted, adopted or resolved. */
export const DRIFT_ITEM_STATES = ['open', 'reverted', 'accepted', 'adopted', 'resolved'] as const;
/** A drift item's state (see DRIFT_ITEM_STATES). */
export type DriftItemState = (typeof DRIFT_ITEM_STATES)[number];
/** Drift items that still count against a host (alerts, status, reconciliation). */
export const OPEN_DRIFT_STATES: readonly DriftItemState[] = ['open'];

/** What a command asks an agent to do: about drift, or capture its packages and files for `release capture`. */
export const AGENT_COMMAND_KINDS = ['drift-scan', 'drift-revert', 'drift-accept', 'release-capture'] as const;
/** A command's kind (see AGENT_COMMAND_KINDS). */
export type AgentCommandKind = (typeof AGENT_COMMAND_KINDS)[number];

/** pending → sent (handed out) → done | failed; sent goes back to pending when the agent restarts. */
export const AGENT_COMMAND_STATES = ['pending', 'sent', 'done', 'failed'] as const;
/** A command's state (see AGENT_COMMAND_STATES). */
export type AgentCommandState = (typeof AGENT_COMMAND_STATES)[number];

/** How a package drift item is named where paths name the others: `package:NAME` (NAME as dpkg lists it, `name:arch` when multiarch). */
export const PACKAGE_ITEM_PREFIX = 'package:';

/** The item path of a package. */
export function packageItemPath(name: string): string {
  return `${PACKAGE_ITEM_PREFIX}${name}`;
}

/** The package a `package:NAME` item path names (a valid Debian package name, optionally `:arch`), else undefined. */
export function packageNameOf(path: string): string | undefined {
  return /^package:([a-z0-9][a-z0-9+.-]*(?::[a-z0-9-]+)?)$/.exec(path)?.[1];
}
