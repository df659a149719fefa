import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { activeFreeze, describeOpening, insideWindow, nextOpening, nextWindowOpening, zonedTime, type ChangeWindow, type Freeze } from '../../src/core/change-window.js';

const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri'];
const berlinOffice: ChangeWindow = { days: WEEKDAYS, hours: '09:00-17:00', timezone: 'Europe/Berlin' };
const at = (iso: string) => new Date(iso);

describe('change windows', () => {
  it('is inside a window by the wall clock of its zone, not UTC (Berlin is UTC+1 in winter)', () => {
    // Monday 2030-01-07: 09:00 Berlin is 08:00Z, 17:00 Berlin is 16:00Z.
    assert.equal(insideWindow(at('2030-01-07T07:59:00Z'), berlinOffice), false, '08:59 Berlin');
    assert.equal(insideWindow(at('2030-01-07T08:00:00Z'), berlinOffice), true, '09:00 Berlin (start inclusive)');
    assert.equal(insideWindow(at('2030-01-07T15:59:00Z'), berlinOffice), true, '16:59 Berlin');
    assert.equal(insideWindow(at('2030-01-07T16:00:00Z'), berlinOffice), false, '17:00 Berlin (end exclusive)');
    assert.equal(insideWindow(at('2030-01-12T10:00:00Z'), berlinOffice), false, 'Saturday');
  });

  it('takes the weekday from the zone: one instant is Friday in New York and Saturday in Tokyo', () => {
    const instant = at('2030-01-11T20:00:00Z'); // Fri 15:00 New York, Sat 05:00 Tokyo
    const fridays = (timezone: string): ChangeWindow => ({ days: ['fri'], hours: '00:00-24:00', timezone });
    assert.equal(insideWindow(instant, fridays('America/New_York')), true);
    assert.equal(insideWindow(instant, fridays('Asia/Tokyo')), false);
    assert.equal(insideWindow(instant, { days: ['sat'], hours: '05:00-06:00', timezone: 'Asia/Tokyo' }), true);
    assert.equal(insideWindow(instant, { days: ['fri'], hours: '20:00-21:00', timezone: 'UTC' }), true);
  });

  it('follows the DST change in Europe/Berlin (Sunday 2030-03-31: 02:00 CET jumps to 03:00 CEST)', () => {
    const sundays: ChangeWindow = { days: ['sat', 'sun'], hours: '09:00-17:00', timezone: 'Europe/Berlin' };
    // Saturday (CET, UTC+1): 09:00 local is 08:00Z.
    assert.equal(insideWindow(at('2030-03-30T07:30:00Z'), sundays), false, 'Sat 08:30 CET');
    assert.equal(insideWindow(at('2030-03-30T08:00:00Z'), sundays), true, 'Sat 09:00 CET');
    // Sunday (CEST, UTC+2): 09:00 local is 07:00Z.
    assert.equal(insideWindow(at('2030-03-31T07:00:00Z'), sundays), true, 'Sun 09:00 CEST');
    assert.equal(insideWindow(at('2030-03-31T06:59:00Z'), sundays), false, 'Sun 08:59 CEST');
    assert.equal(insideWindow(at('2030-03-31T14:59:00Z'), sundays), true, 'Sun 16:59 CEST');
    assert.equal(insideWindow(at('2030-03-31T15:00:00Z'), sundays), false, 'Sun 17:00 CEST');
    // The hour that does not exist locally, and the instant of a wall time on that day.
    assert.equal(zonedTime(2030, 3, 31, 9 * 60, 'Europe/Berlin').toISOString(), '2030-03-31T07:00:00.000Z');
    assert.equal(zonedTime(2030, 3, 30, 9 * 60, 'Europe/Berlin').toISOString(), '2030-03-30T08:00:00.000Z');
    const early: ChangeWindow = { days: ['sun'], hours: '01:00-04:00', timezone: 'Europe/Berlin' };
    assert.equal(insideWindow(at('2030-03-31T00:30:00Z'), early), true, '01:30 CET');
    assert.equal(insideWindow(at('2030-03-31T01:30:00Z'), early), true, '03:30 CEST (right after the jump)');
    assert.equal(insideWindow(at('2030-03-31T02:00:00Z'), early), false, '04:00 CEST');
  });

  it('finds the next opening across the DST change and across the autumn change back', () => {
    const window: ChangeWindow = { days: ['sun'], hours: '09:00-17:00', timezone: 'Europe/Berlin' };
    // From Saturday evening before the spring change: Sunday 09:00 CEST = 07:00Z.
    assert.equal(nextWindowOpening(at('2030-03-30T20:00:00Z'), [window])?.toISOString(), '2030-03-31T07:00:00.000Z');
    // Autumn: Sunday 2030-10-27 is back on CET, 09:00 local = 08:00Z.
    assert.equal(nextWindowOpening(at('2030-10-26T20:00:00Z'), [window])?.toISOString(), '2030-10-27T08:00:00.000Z');
  });

  it('next opening: now when inside, the same day later, or the next allowed day', () => {
    const inside = at('2030-01-07T10:00:00Z');
    assert.equal(nextWindowOpening(inside, [berlinOffice])?.toISOString(), inside.toISOString());
    assert.equal(nextWindowOpening(at('2030-01-07T06:00:00Z'), [berlinOffice])?.toISOString(), '2030-01-07T08:00:00.000Z', 'Monday morning: at 09:00 the same day');
    assert.equal(nextWindowOpening(at('2030-01-07T17:00:00Z'), [berlinOffice])?.toISOString(), '2030-01-08T08:00:00.000Z', 'Monday evening: Tuesday 09:00');
    assert.equal(nextWindowOpening(at('2030-01-11T18:00:00Z'), [berlinOffice])?.toISOString(), '2030-01-14T08:00:00.000Z', 'Friday evening: Monday 09:00');
    // With several windows, the earliest opening wins.
    const tokyo: ChangeWindow = { days: ['sat'], hours: '10:00-12:00', timezone: 'Asia/Tokyo' };
    assert.equal(nextWindowOpening(at('2030-01-11T18:00:00Z'), [berlinOffice, tokyo])?.toISOString(), '2030-01-12T01:00:00.000Z', 'Saturday 10:00 Tokyo');
    assert.equal(nextWindowOpening(at('2030-01-11T18:00:00Z'), [])?.toISOString(), '2030-01-11T18:00:00.000Z', 'no windows: any time');
  });

  it('a freeze is in force from `from` (inclusive) to `to` (exclusive)', () => {
    const freezes: Freeze[] = [{ from: '2030-01-07T00:00:00.000Z', to: '2030-01-08T00:00:00.000Z', reason: 'year-end close' }];
    assert.equal(activeFreeze(at('2030-01-06T23:59:59Z'), freezes), undefined);
    assert.equal(activeFreeze(at('2030-01-07T00:00:00Z'), freezes)?.reason, 'year-end close');
    assert.equal(activeFreeze(at('2030-01-07T23:59:59Z'), freezes)?.reason, 'year-end close');
    assert.equal(activeFreeze(at('2030-01-08T00:00:00Z'), freezes), undefined);
  });

  it('nextOpening skips a freeze that covers the next window opening', () => {
    // Frozen all Monday 2030-01-07: from Sunday, the first opening is Tuesday 09:00 Berlin.
    const freezes: Freeze[] = [{ from: '2030-01-07T00:00:00.000Z', to: '2030-01-08T00:00:00.000Z', reason: 'audit' }];
    assert.equal(nextOpening(at('2030-01-06T12:00:00Z'), [berlinOffice], freezes)?.toISOString(), '2030-01-08T08:00:00.000Z');
    // A freeze ending inside a window opens at the freeze's end.
    const midday: Freeze[] = [{ from: '2030-01-07T00:00:00.000Z', to: '2030-01-07T11:30:00.000Z', reason: 'migration' }];
    assert.equal(nextOpening(at('2030-01-07T09:00:00Z'), [berlinOffice], midday)?.toISOString(), '2030-01-07T11:30:00.000Z');
    // Without windows, the end of the freeze; back-to-back freezes chain.
    const chained: Freeze[] = [
      { from: '2030-01-07T00:00:00.000Z', to: '2030-01-08T00:00:00.000Z', reason: 'one' },
      { from: '2030-01-08T00:00:00.000Z', to: '2030-01-09T06:00:00.000Z', reason: 'two' },
    ];
    assert.equal(nextOpening(at('2030-01-07T10:00:00Z'), [], chained)?.toISOString(), '2030-01-09T06:00:00.000Z');
    // Outside every freeze and inside a window: now.
    assert.equal(nextOpening(at('2030-01-09T10:00:00Z'), [berlinOffice], freezes)?.toISOString(), '2030-01-09T10:00:00.000Z');
  });

  it('describeOpening names the weekday, date, local time and zone', () => {
    assert.equal(describeOpening(at('2030-01-14T08:00:00Z'), 'Europe/Berlin'), 'Mon 2030-01-14 09:00 Europe/Berlin');
    assert.equal(describeOpening(at('2030-03-31T07:00:00Z'), 'Europe/Berlin'), 'Sun 2030-03-31 09:00 Europe/Berlin');
    assert.equal(describeOpening(at('2030-01-12T01:00:00Z'), 'Asia/Tokyo'), 'Sat 2030-01-12 10:00 Asia/Tokyo');
    assert.equal(describeOpening(at('2030-01-11T23:05:00Z'), 'UTC'), 'Fri 2030-01-11 23:05 UTC');
  });
});
