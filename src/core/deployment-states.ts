/**
 * The states and kinds of deployments and of their hosts' steps, as const
 * lists with the unions built from them: the store's rows, the wire schemas
 * and the rollout's decisions all use these, and which states count as in
 * flight is decided here rather than in a query.
 */

/** How a deployment is meant: a rollout, an environment rollback, or one host returning to its environment's release. */
export const DEPLOYMENT_KINDS = ['deploy', 'rollback', 'return'] as const;
/** How a deployment is meant (see DEPLOYMENT_KINDS). */
export type DeploymentKind = (typeof DEPLOYMENT_KINDS)[number];

/** A deployment's life: awaiting_approval → running → rolling_back? → succeeded | failed; or rejected | expired. */
export const DEPLOYMENT_STATES = ['awaiting_approval', 'running', 'rolling_back', 'succeeded', 'failed', 'rejected', 'expired'] as const;
/** A deployment's state (see DEPLOYMENT_STATES). */
export type DeploymentState = (typeof DEPLOYMENT_STATES)[number];

/** One host's step of a deployment. */
export const STEP_STATES = ['waiting', 'pending', 'staging', 'activated', 'succeeded', 'failed', 'skipped', 'reverting', 'reverted', 'revert_failed'] as const;
/** One host's step state (see STEP_STATES). */
export type StepState = (typeof STEP_STATES)[number];

/** What an approver decided about a deployment awaiting approval. */
export const APPROVAL_DECISIONS = ['approve', 'reject'] as const;
/** An approver's decision (see APPROVAL_DECISIONS). */
export type ApprovalDecision = (typeof APPROVAL_DECISIONS)[number];

/** Deployments not over yet: waiting for approval or still moving hosts (one per environment at a time). */
export const IN_FLIGHT_DEPLOYMENT_STATES: readonly DeploymentState[] = ['awaiting_approval', 'running', 'rolling_back'];
/** Deployments that still move hosts. */
export const ACTIVE_DEPLOYMENTS: readonly DeploymentState[] = ['running', 'rolling_back'];
/** Steps whose host still has work to do (or may be doing it). */
export const IN_FLIGHT_STEPS: readonly StepState[] = ['pending', 'staging', 'activated', 'reverting'];
/** Steps that are over, whatever the host reports later. */
export const FINISHED_STEPS: readonly StepState[] = ['succeeded', 'failed', 'skipped', 'reverted', 'revert_failed'];
