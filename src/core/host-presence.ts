/**
 * Whether a host's agent is heard from and whether it still reports drift,
 * judged purely from timestamps and the state last alerted. An agent that
 * goes quiet is where an intruder hides (stop the agent, then edit), so each
 * change of either is alerted once, and the return too.
 */

/** What a host's health checks last said (stored per host; null there until a check reported). */
export type HostHealth = 'healthy' | 'unhealthy';

/** What was last alerted about a host (stored per host; absent means online and reporting since enrollment). */
export interface HostAlertState {
  readonly presence: 'online' | 'offline';
  /** When `presence` was decided (ISO). */
  readonly presenceAt: string;
  readonly drift: 'reporting' | 'silent';
  /** When `drift` was decided (ISO). */
  readonly driftAt: string;
}

/** When the server last heard from a host (ISO times; null: never). */
export interface HostSightings {
  readonly enrolledAt: string | null;
  readonly lastSeenAt: string | null;
  readonly driftReportAt: string | null;
}

/** How long a silence may last before it counts, and since when this server could have heard anything. */
export interface PresenceThresholds {
  readonly offlineAfterMs: number;
  readonly driftSilentAfterMs: number;
  /**
   * When this server started (epoch ms): while it was down no agent could
   * reach it, so a silence is never counted from before that.
   */
  readonly watchingSince: number;
}

/** One change worth an alert. */
export type HostPresenceChange = 'offline' | 'online' | 'drift-silent' | 'drift-reporting';

/** Whether `at` (ISO) lies within `windowMs` before `now`; what "online" means everywhere. */
export function seenWithin(at: string | null, now: number, windowMs: number): boolean {
  return at !== null && now - Date.parse(at) <= windowMs;
}

/**
 * The host's next alert state and the changes that lead there, or undefined
 * when nothing changed (and for hosts not enrolled yet). Offline counts from
 * the last sighting; back online needs a sighting within the window; drift
 * silence is judged only while online and counts from the last report or the
 * return online, whichever is later; a silent host reports again only with a
 * report newer than the silence alert.
 */
export function judgeHostPresence(alerted: HostAlertState | undefined, seen: HostSightings, now: number, thresholds: PresenceThresholds): { readonly state: HostAlertState; readonly changes: readonly HostPresenceChange[] } | undefined {
  if (seen.enrolledAt === null) return undefined;
  const before: HostAlertState = alerted ?? { presence: 'online', presenceAt: seen.enrolledAt, drift: 'reporting', driftAt: seen.enrolledAt };
  const at = new Date(now).toISOString();
  const changes: HostPresenceChange[] = [];
  let state = before;
  if (before.presence === 'online') {
    const lastHeard = Math.max(Date.parse(seen.lastSeenAt ?? seen.enrolledAt), thresholds.watchingSince);
    if (now - lastHeard > thresholds.offlineAfterMs) {
      state = { ...state, presence: 'offline', presenceAt: at };
      changes.push('offline');
    }
  } else if (seenWithin(seen.lastSeenAt, now, thresholds.offlineAfterMs)) {
    state = { ...state, presence: 'online', presenceAt: at };
    changes.push('online');
  }
  if (state.presence === 'online') {
    if (state.drift === 'reporting') {
      const lastReport = Math.max(Date.parse(seen.driftReportAt ?? seen.enrolledAt), Date.parse(state.presenceAt), thresholds.watchingSince);
      if (now - lastReport > thresholds.driftSilentAfterMs) {
        state = { ...state, drift: 'silent', driftAt: at };
        changes.push('drift-silent');
      }
    } else if (seen.driftReportAt !== null && Date.parse(seen.driftReportAt) > Date.parse(state.driftAt)) {
      state = { ...state, drift: 'reporting', driftAt: at };
      changes.push('drift-reporting');
    }
  }
  return changes.length === 0 ? undefined : { state, changes };
}
