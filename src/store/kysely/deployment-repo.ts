/** Deployments, steps, logs and approvals over Kysely. */
import { sql } from 'kysely';
import { ACTIVE_DEPLOYMENTS, IN_FLIGHT_DEPLOYMENT_STATES, IN_FLIGHT_STEPS } from '../../core/deployment-states.js';
import type { DeploymentWriteRepo } from '../deployment-repo.js';
import { inChunks, type Executor } from './executor.js';

/** Deployments over `db`. */
export function kyselyDeploymentRepo(db: Executor): DeploymentWriteRepo {
  const deployment = (id: number) => db.selectFrom('deployments').selectAll().where('id', '=', id).executeTakeFirst();
  return {
    deployment,
    deploymentHosts(id) {
      return db.selectFrom('deployment_hosts').selectAll().where('deployment_id', '=', id).orderBy('host').execute();
    },
    listDeployments(options) {
      let query = db.selectFrom('deployments').selectAll();
      if (options.env !== undefined) query = query.where('env', '=', options.env);
      return query.orderBy('id', 'desc').limit(options.limit).execute();
    },
    runningDeployments(env) {
      let query = db.selectFrom('deployments').selectAll().where('state', '=', 'running');
      if (env !== undefined) query = query.where('env', '=', env);
      return query.orderBy('id').execute();
    },
    deploymentLogs(id, host) {
      let query = db.selectFrom('deployment_logs').selectAll().where('deployment_id', '=', id);
      if (host !== undefined) query = query.where('host', '=', host);
      return query.orderBy('at').orderBy('host').orderBy('line').execute();
    },
    activeDeployments(env) {
      let query = db.selectFrom('deployments').selectAll().where('state', 'in', [...IN_FLIGHT_DEPLOYMENT_STATES]);
      if (env !== undefined) query = query.where('env', '=', env);
      return query.orderBy('id').execute();
    },
    approvals(deploymentId) {
      return db.selectFrom('approvals').selectAll().where('deployment_id', '=', deploymentId).orderBy('at').execute();
    },
    deploymentsSince(since, env) {
      let query = db.selectFrom('deployments').selectAll().where('created_at', '>=', since);
      if (env !== undefined) query = query.where('env', '=', env);
      return query.orderBy('id', 'desc').execute();
    },
    async pendingStep(host) {
      const row = await db
        .selectFrom('deployment_hosts as step')
        .innerJoin('deployments as d', 'd.id', 'step.deployment_id')
        .selectAll('step')
        .where('step.host', '=', host)
        .where('step.state', 'in', [...IN_FLIGHT_STEPS])
        .where('d.state', 'in', [...ACTIVE_DEPLOYMENTS])
        .orderBy('step.deployment_id')
        .executeTakeFirst();
      if (!row) return undefined;
      const found = await deployment(row.deployment_id);
      return found ? { deployment: found, step: row } : undefined;
    },
    async insertDeployment(row) {
      await db.insertInto('deployments').values(row).execute();
    },
    async updateDeployment(id, patch) {
      const row = await db
        .updateTable('deployments')
        .set({ ...patch, revision: sql`revision + 1` })
        .where('id', '=', id)
        .returningAll()
        .executeTakeFirstOrThrow();
      return { ...row, revision: Number(row.revision), current_batch: Number(row.current_batch), batches: Number(row.batches) };
    },
    async insertDeploymentHost(row) {
      await db.insertInto('deployment_hosts').values(row).execute();
    },
    async updateDeploymentHost(id, host, patch) {
      await db.updateTable('deployment_hosts').set(patch).where('deployment_id', '=', id).where('host', '=', host).execute();
    },
    async appendDeploymentLogs(rows) {
      await inChunks(rows, (chunk) => db.insertInto('deployment_logs').values(chunk).execute());
    },
    async insertApproval(row) {
      await db.insertInto('approvals').values(row).execute();
    },
  };
}
