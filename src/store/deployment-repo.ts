/** Deployments, their hosts' steps, captured output and approvals. */
import type { Selectable } from 'kysely';
import type { ApprovalsTable, DeploymentHostsTable, DeploymentLogsTable, DeploymentsTable } from './schema.js';

/** One deployment. */
export type DeploymentRow = Selectable<DeploymentsTable>;
/** One host's step of a deployment. */
export type DeploymentHostRow = Selectable<DeploymentHostsTable>;
/** One captured line of hook or health-check output. */
export type DeploymentLogRow = Selectable<DeploymentLogsTable>;
/** One approver's decision. */
export type ApprovalRow = Selectable<ApprovalsTable>;

/** Reads of deployments. */
export interface DeploymentReadRepo {
  deployment(id: number): Promise<DeploymentRow | undefined>;
  /** The deployment's steps, by host. */
  deploymentHosts(id: number): Promise<DeploymentHostRow[]>;
  /** Newest first. */
  listDeployments(options: { env?: string | undefined; limit: number }): Promise<DeploymentRow[]>;
  /** Deployments in state `running`, oldest first. */
  runningDeployments(env?: string): Promise<DeploymentRow[]>;
  /** Captured hook and health-check output of a deployment, oldest first. */
  deploymentLogs(id: number, host?: string): Promise<DeploymentLogRow[]>;
  /** Deployments in one of IN_FLIGHT_DEPLOYMENT_STATES (core/deployment-states.ts), oldest first. */
  activeDeployments(env?: string): Promise<DeploymentRow[]>;
  approvals(deploymentId: number): Promise<ApprovalRow[]>;
  /** Deployments created at or after `since` (ISO), newest first. */
  deploymentsSince(since: string, env?: string): Promise<DeploymentRow[]>;
  /** The host's step in one of IN_FLIGHT_STEPS of a deployment in one of ACTIVE_DEPLOYMENTS (core), if any. */
  pendingStep(host: string): Promise<{ deployment: DeploymentRow; step: DeploymentHostRow } | undefined>;
}

/** Reads and writes of deployments. */
export interface DeploymentWriteRepo extends DeploymentReadRepo {
  insertDeployment(row: DeploymentRow): Promise<void>;
  /** Updates a deployment and increments its revision (in PostgreSQL this also locks its row). */
  updateDeployment(id: number, patch: Partial<Pick<DeploymentRow, 'state' | 'finished_at' | 'error' | 'current_batch' | 'next_batch_at' | 'override_reason'>>): Promise<DeploymentRow>;
  insertDeploymentHost(row: DeploymentHostRow): Promise<void>;
  updateDeploymentHost(id: number, host: string, patch: Partial<Pick<DeploymentHostRow, 'state' | 'error' | 'updated_at' | 'deadline_at' | 'progress'>>): Promise<void>;
  appendDeploymentLogs(rows: readonly DeploymentLogRow[]): Promise<void>;
  insertApproval(row: ApprovalRow): Promise<void>;
}
