/**
 * The periodic sweep that alerts on hosts going quiet: an agent that stops
 * being heard from (offline) or stops sending drift reports (silent), and its
 * return. Each change is decided purely (src/core/host-presence.ts), stored
 * with its audit event in one transaction only if no other server stored it
 * first, and only then alerted: once per change, across restarts and servers.
 */
import { formatDuration } from '../../core/duration.js';
import { judgeHostPresence, type HostAlertState, type HostPresenceChange, type HostSightings, type PresenceThresholds } from '../../core/host-presence.js';
import type { HostAlertStateRow, HostRow } from '../../store/store.js';
import type { Alert } from '../alerts/alert-channel.js';
import { currentConfig } from '../config-service.js';
import type { ServerContext } from '../context.js';
import { driftStaleAfterMs } from '../http/views.js';

/** Judges every enrolled host once and alerts the changes; `watchingSince` is when this server started (epoch ms). */
export async function sweepHostPresence(context: ServerContext, watchingSince: number): Promise<void> {
  const read = context.store.read;
  const config = await currentConfig(read);
  if (!config) return;
  const [hosts, reportTimes, alerted] = await Promise.all([read.listHosts(), read.driftReportTimes(), read.hostAlertStates()]);
  const now = context.now().getTime();
  const thresholds: PresenceThresholds = { offlineAfterMs: context.onlineWindowMs, driftSilentAfterMs: driftStaleAfterMs(config), watchingSince };
  for (const host of hosts) {
    const before = alerted.get(host.name);
    const seen: HostSightings = { enrolledAt: host.enrolled_at, lastSeenAt: host.last_seen_at, driftReportAt: reportTimes.get(host.name) ?? null };
    const judged = judgeHostPresence(before && stateOf(before), seen, now, thresholds);
    if (!judged) continue;
    const alerts = judged.changes.map((change) => alertOf(change, host, seen, before, thresholds, judged.state));
    const stored = await context.store.transaction(async (repo) => {
      if (!(await repo.swapHostAlertState(before, rowOf(host.name, judged.state)))) return false;
      for (const alert of alerts) await repo.appendAudit({ at: alert.at, actor: 'lockstep', action: alert.kind, target: `host:${host.name}`, details: { env: host.env, ...alert.details } });
      return true;
    });
    // Another server stored this change first and alerts it; this one looks again on its next sweep.
    if (!stored) continue;
    for (const alert of alerts) context.alerts.dispatch(alert, config.environments[host.env]?.alerts);
  }
}

function stateOf(row: HostAlertStateRow): HostAlertState {
  return { presence: row.presence, presenceAt: row.presence_at, drift: row.drift, driftAt: row.drift_at };
}

function rowOf(host: string, state: HostAlertState): HostAlertStateRow {
  return { host, presence: state.presence, presence_at: state.presenceAt, drift: state.drift, drift_at: state.driftAt };
}

/** The alert (and audit event) for one change; its summary says what is unknown now and since when. */
function alertOf(change: HostPresenceChange, host: HostRow, seen: HostSightings, before: HostAlertStateRow | undefined, thresholds: PresenceThresholds, after: HostAlertState): Alert {
  const where = `host ${host.name} in ${host.env}`;
  const base = { env: host.env, details: { host: host.name, lastSeenAt: seen.lastSeenAt, driftReportAt: seen.driftReportAt } };
  switch (change) {
    case 'offline':
      return {
        ...base,
        kind: 'host.offline',
        at: after.presenceAt,
        summary: `${where} is offline: its agent was last heard from ${seen.lastSeenAt ?? 'never'} (offline after ${formatDuration(thresholds.offlineAfterMs)}); deployments will fail there and drift on it goes unseen`,
        details: { ...base.details, offlineAfterMs: thresholds.offlineAfterMs },
      };
    case 'online':
      return {
        ...base,
        kind: 'host.online',
        at: after.presenceAt,
        summary: `${where} is back online (offline since ${before?.presence_at ?? 'unknown'})`,
        details: { ...base.details, offlineSince: before?.presence_at ?? null },
      };
    case 'drift-silent':
      return {
        ...base,
        kind: 'host.drift_silent',
        at: after.driftAt,
        summary: `${where} sends no drift reports (last ${seen.driftReportAt ?? 'never'}; expected every ${formatDuration(thresholds.driftSilentAfterMs)} at most): changes on it go unseen`,
        details: { ...base.details, driftSilentAfterMs: thresholds.driftSilentAfterMs },
      };
    case 'drift-reporting':
      return {
        ...base,
        kind: 'host.drift_reporting',
        at: after.driftAt,
        summary: `${where} reports drift again (silent since ${before?.drift_at ?? 'unknown'})`,
        details: { ...base.details, silentSince: before?.drift_at ?? null },
      };
  }
}
