/**
 * The kinds stored about fire calls, as const lists with the unions built
 * from them; apart from firecall.ts so the wire schemas can use them without
 * loading the config parser.
 */

/** How a closed fire call's changes were brought back under control. */
export const RECONCILE_MODES = ['revert', 'adopt'] as const;
/** A reconciliation's mode (see RECONCILE_MODES). */
export type ReconcileMode = (typeof RECONCILE_MODES)[number];

/**
 * Where a fire-call request stands with its approval (firecall.require_approval):
 * `awaiting` an approver other than the requester; `approved`; `overridden` by an
 * admin's --override; `expired` before anyone approved it (no certificate was issued).
 */
export const FIRECALL_APPROVALS = ['awaiting', 'approved', 'overridden', 'expired'] as const;
/** A fire call's approval (see FIRECALL_APPROVALS); null where none was required. */
export type FirecallApproval = (typeof FIRECALL_APPROVALS)[number];

/** What agents ship about a fire call: sshd log lines naming its key id, and pieces of session transcripts. */
export const FIRECALL_RECORD_KINDS = ['sshd', 'transcript'] as const;
/** A fire-call record's kind (see FIRECALL_RECORD_KINDS). */
export type FirecallRecordKind = (typeof FIRECALL_RECORD_KINDS)[number];
