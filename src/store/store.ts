/**
 * The persistence interface of the server, composed of one small interface
 * per area (each in its own file here: a service may depend on only the
 * area it uses). One implementation over Kysely (src/store/kysely/, one file
 * per area) serves every database; src/store/sqlite/ and src/store/postgres/
 * only build the Kysely dialect for theirs.
 */
import type { AgentCommandReadRepo, AgentCommandWriteRepo } from './agent-command-repo.js';
import type { AuditReadRepo, AuditSigner, AuditWriteRepo } from './audit-repo.js';
import type { ConfigReadRepo, ConfigWriteRepo } from './config-repo.js';
import type { CounterWriteRepo } from './counter-repo.js';
import type { DeploymentReadRepo, DeploymentWriteRepo } from './deployment-repo.js';
import type { DriftReadRepo, DriftWriteRepo } from './drift-repo.js';
import type { FirecallReadRepo, FirecallWriteRepo } from './firecall-repo.js';
import type { HostAlertStateReadRepo, HostAlertStateWriteRepo } from './host-alert-state-repo.js';
import type { HostFactsReadRepo, HostFactsWriteRepo } from './host-facts-repo.js';
import type { ParityAlertStateReadRepo, ParityAlertStateWriteRepo } from './parity-alert-state-repo.js';
import type { HostReadRepo, HostWriteRepo } from './host-repo.js';
import type { ReleaseReadRepo, ReleaseWriteRepo } from './release-repo.js';
import type { SecretReadRepo, SecretWriteRepo } from './secret-repo.js';
import type { TokenReadRepo, TokenWriteRepo } from './token-repo.js';
import type { UploadReadRepo, UploadWriteRepo } from './upload-repo.js';

export type { AgentCommandRow } from './agent-command-repo.js';
export type { AuditCheckpointRow, AuditEventRow, AuditInput, AuditSigner } from './audit-repo.js';
export type { ConfigRow } from './config-repo.js';
export type { ApprovalRow, DeploymentHostRow, DeploymentLogRow, DeploymentRow } from './deployment-repo.js';
export type { DriftItemFilter, DriftItemRow, DriftScanRow } from './drift-repo.js';
export type { FirecallHostRow, FirecallRecordRow, FirecallRow } from './firecall-repo.js';
export type { HostAlertStateRow } from './host-alert-state-repo.js';
export type { HostFactsRow } from './host-facts-repo.js';
export type { ParityAlertStateRow } from './parity-alert-state-repo.js';
export type { HostRow } from './host-repo.js';
export type { ReleaseEnvironmentRow, ReleaseRow } from './release-repo.js';
export type { SecretRow } from './secret-repo.js';
export type { TokenRow } from './token-repo.js';
export type { BlobHoldRow, UploadSessionRow } from './upload-repo.js';

/** Queries that change nothing, of every area. */
export interface ReadRepo
  extends ConfigReadRepo,
    TokenReadRepo,
    ReleaseReadRepo,
    HostReadRepo,
    HostFactsReadRepo,
    HostAlertStateReadRepo,
    ParityAlertStateReadRepo,
    DeploymentReadRepo,
    AuditReadRepo,
    FirecallReadRepo,
    DriftReadRepo,
    AgentCommandReadRepo,
    SecretReadRepo,
    UploadReadRepo {}

/** Queries and changes of every area; only available inside a transaction. */
export interface WriteRepo
  extends ReadRepo,
    CounterWriteRepo,
    ConfigWriteRepo,
    TokenWriteRepo,
    ReleaseWriteRepo,
    HostWriteRepo,
    HostFactsWriteRepo,
    HostAlertStateWriteRepo,
    ParityAlertStateWriteRepo,
    DeploymentWriteRepo,
    AuditWriteRepo,
    FirecallWriteRepo,
    DriftWriteRepo,
    AgentCommandWriteRepo,
    SecretWriteRepo,
    UploadWriteRepo {}

/** What differs between databases, stated as capabilities rather than names. */
export interface StoreCapabilities {
  /** Several server processes may share the database. */
  readonly sharedByServers: boolean;
}

/** A database holding Lockstep's state. */
export interface Store {
  readonly capabilities: StoreCapabilities;
  /** Reads outside any transaction. */
  readonly read: ReadRepo;
  /** Runs `work` in one transaction: everything it writes commits together, or nothing does. */
  transaction<T>(work: (repo: WriteRepo) => Promise<T>): Promise<T>;
  /** From now on, every transaction that appends audit events also stores a checkpoint signed by `signer` over its new head. */
  useAuditSigner(signer: AuditSigner | undefined): void;
  /** Brings the schema up to date. */
  migrate(): Promise<void>;
  close(): Promise<void>;
}
