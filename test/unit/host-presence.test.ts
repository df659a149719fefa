import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { judgeHostPresence, type HostAlertState, type HostSightings, type PresenceThresholds } from '../../src/core/host-presence.js';

const T0 = Date.parse('2030-01-01T12:00:00.000Z');
/** ISO time `seconds` after T0. */
const at = (seconds: number) => new Date(T0 + seconds * 1000).toISOString();
/** Epoch ms `seconds` after T0. */
const ms = (seconds: number) => T0 + seconds * 1000;

/** Offline after 40 s, drift silent after 600 s; the server has watched since T0 - 1 h. */
const thresholds: PresenceThresholds = { offlineAfterMs: 40_000, driftSilentAfterMs: 600_000, watchingSince: ms(-3600) };
const enrolled = at(-3000);
const sightings = (lastSeen: number | null, lastReport: number | null): HostSightings => ({
  enrolledAt: enrolled,
  lastSeenAt: lastSeen === null ? null : at(lastSeen),
  driftReportAt: lastReport === null ? null : at(lastReport),
});
const state = (presence: 'online' | 'offline', presenceAt: number, drift: 'reporting' | 'silent', driftAt: number): HostAlertState => ({ presence, presenceAt: at(presenceAt), drift, driftAt: at(driftAt) });

describe('judging whether a host went quiet', () => {
  const cases: { name: string; alerted: HostAlertState | undefined; seen: HostSightings; now: number; watchingSince?: number; expected: ReturnType<typeof judgeHostPresence> }[] = [
    { name: 'heard 10 s ago, reported 60 s ago: nothing to say', alerted: undefined, seen: sightings(-10, -60), now: ms(0), expected: undefined },
    {
      name: 'not heard from for 41 s: offline',
      alerted: undefined,
      seen: sightings(-41, -60),
      now: ms(0),
      expected: { state: { presence: 'offline', presenceAt: at(0), drift: 'reporting', driftAt: enrolled }, changes: ['offline'] },
    },
    { name: 'exactly 40 s is still online', alerted: undefined, seen: sightings(-40, -60), now: ms(0), expected: undefined },
    { name: 'already alerted offline and still silent: no second alert', alerted: state('offline', -100, 'reporting', -3000), seen: sightings(-141, -200), now: ms(0), expected: undefined },
    {
      name: 'heard again after offline: back online',
      alerted: state('offline', -100, 'reporting', -3000),
      seen: sightings(-1, -200),
      now: ms(0),
      expected: { state: { presence: 'online', presenceAt: at(0), drift: 'reporting', driftAt: at(-3000) }, changes: ['online'] },
    },
    {
      name: 'a server that just started counts silence from its start, not from the last sighting',
      alerted: undefined,
      seen: sightings(-900, -900),
      now: ms(0),
      watchingSince: ms(-10),
      expected: undefined,
    },
    {
      name: '…and once the window passed since its start, the host is offline',
      alerted: undefined,
      seen: sightings(-900, -900),
      now: ms(0),
      watchingSince: ms(-41),
      expected: { state: { presence: 'offline', presenceAt: at(0), drift: 'reporting', driftAt: enrolled }, changes: ['offline'] },
    },
    {
      name: 'a restarted server does not take its own start for a return of an offline host',
      alerted: state('offline', -900, 'reporting', -3000),
      seen: sightings(-1000, -1000),
      now: ms(0),
      watchingSince: ms(-5),
      expected: undefined,
    },
    {
      name: 'online but no drift report for 601 s: silent',
      alerted: undefined,
      seen: sightings(-5, -601),
      now: ms(0),
      expected: { state: { presence: 'online', presenceAt: enrolled, drift: 'silent', driftAt: at(0) }, changes: ['drift-silent'] },
    },
    {
      name: 'never reported: silence counts from enrollment',
      alerted: undefined,
      seen: sightings(-5, null),
      now: ms(0),
      expected: { state: { presence: 'online', presenceAt: enrolled, drift: 'silent', driftAt: at(0) }, changes: ['drift-silent'] },
    },
    { name: 'offline hosts raise no drift alert on top', alerted: state('offline', -700, 'reporting', -3000), seen: sightings(-800, -800), now: ms(0), expected: undefined },
    {
      name: 'back online after a long absence: the drift clock restarts with the return',
      alerted: state('offline', -700, 'reporting', -3000),
      seen: sightings(-1, -800),
      now: ms(0),
      expected: { state: { presence: 'online', presenceAt: at(0), drift: 'reporting', driftAt: at(-3000) }, changes: ['online'] },
    },
    { name: '…and is not silent before the period passed since the return', alerted: state('online', -599, 'reporting', -3000), seen: sightings(-1, -800), now: ms(0), expected: undefined },
    { name: 'silent and still no report: no second alert', alerted: state('online', -3000, 'silent', -100), seen: sightings(-1, -700), now: ms(0), expected: undefined },
    {
      name: 'silent, then a report newer than the alert: reporting again',
      alerted: state('online', -3000, 'silent', -100),
      seen: sightings(-1, -2),
      now: ms(0),
      expected: { state: { presence: 'online', presenceAt: at(-3000), drift: 'reporting', driftAt: at(0) }, changes: ['drift-reporting'] },
    },
    {
      name: 'offline and silent, then back with a report: both returns at once',
      alerted: state('offline', -100, 'silent', -200),
      seen: sightings(-1, -1),
      now: ms(0),
      expected: { state: { presence: 'online', presenceAt: at(0), drift: 'reporting', driftAt: at(0) }, changes: ['online', 'drift-reporting'] },
    },
    { name: 'a host not enrolled yet is never judged', alerted: undefined, seen: { enrolledAt: null, lastSeenAt: null, driftReportAt: null }, now: ms(0), expected: undefined },
  ];
  for (const testCase of cases) {
    it(testCase.name, () => {
      const judged = judgeHostPresence(testCase.alerted, testCase.seen, testCase.now, { ...thresholds, watchingSince: testCase.watchingSince ?? thresholds.watchingSince });
      assert.deepEqual(judged, testCase.expected);
    });
  }
});
