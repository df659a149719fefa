/**
 * Change windows and freezes as pure functions of an instant: is a change
 * allowed now, and if not, when does the next opening begin? Time zones are
 * IANA names, resolved with Intl (no clock reads; `now` is passed in).
 */

/** One allowed window, as validated by the config schema. */
export interface ChangeWindow {
  readonly days: readonly string[];
  readonly hours: string;
  readonly timezone: string;
}

/** One freeze: changes are refused from `from` (inclusive) to `to` (exclusive), ISO instants. */
export interface Freeze {
  readonly from: string;
  readonly to: string;
  readonly reason: string;
}

const WEEKDAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];
const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(zone: string): Intl.DateTimeFormat {
  let format = formatters.get(zone);
  if (!format) {
    format = new Intl.DateTimeFormat('en-US', { timeZone: zone, hourCycle: 'h23', weekday: 'short', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric' });
    formatters.set(zone, format);
  }
  return format;
}

/** Wall-clock parts of an instant in a time zone. */
export function zonedParts(at: Date, zone: string): { year: number; month: number; day: number; weekday: string; minutes: number } {
  const parts = Object.fromEntries(formatter(zone).formatToParts(at).map((part) => [part.type, part.value]));
  return {
    year: Number(parts.year),
    month: Number(parts.month),
    day: Number(parts.day),
    weekday: String(parts.weekday).slice(0, 3).toLowerCase(),
    minutes: Number(parts.hour) * 60 + Number(parts.minute),
  };
}

/** The instant at which a zone's wall clock shows the given date and minute of day. */
export function zonedTime(year: number, month: number, day: number, minutes: number, zone: string): Date {
  const wall = Date.UTC(year, month - 1, day, 0, minutes);
  let guess = wall;
  // Two corrections settle the zone's offset (also across a DST change).
  for (let i = 0; i < 2; i++) {
    const seen = zonedParts(new Date(guess), zone);
    const seenWall = Date.UTC(seen.year, seen.month - 1, seen.day, 0, seen.minutes);
    guess += wall - seenWall;
  }
  return new Date(guess);
}

function span(window: ChangeWindow): { start: number; end: number } {
  const minutes = (text: string) => Number(text.slice(0, 2)) * 60 + Number(text.slice(3, 5));
  return { start: minutes(window.hours.slice(0, 5)), end: minutes(window.hours.slice(6)) };
}

/** Whether `at` falls inside the window. */
export function insideWindow(at: Date, window: ChangeWindow): boolean {
  const local = zonedParts(at, window.timezone);
  const { start, end } = span(window);
  return window.days.includes(local.weekday) && local.minutes >= start && local.minutes < end;
}

/** The first instant at or after `from` inside one of the windows (within 8 days), or undefined. */
export function nextWindowOpening(from: Date, windows: readonly ChangeWindow[]): Date | undefined {
  if (windows.length === 0 || windows.some((window) => insideWindow(from, window))) return from;
  let best: Date | undefined;
  for (const window of windows) {
    const { start } = span(window);
    const local = zonedParts(from, window.timezone);
    for (let offset = 0; offset <= 8; offset++) {
      const date = new Date(Date.UTC(local.year, local.month - 1, local.day + offset));
      const weekday = WEEKDAYS[(date.getUTCDay() + 6) % 7] ?? '';
      if (!window.days.includes(weekday)) continue;
      const opening = zonedTime(date.getUTCFullYear(), date.getUTCMonth() + 1, date.getUTCDate(), start, window.timezone);
      if (opening.getTime() < from.getTime()) continue;
      if (!best || opening < best) best = opening;
      break;
    }
  }
  return best;
}

/** The freeze in force at `at`, if any. */
export function activeFreeze(at: Date, freezes: readonly Freeze[]): Freeze | undefined {
  const iso = at.toISOString();
  return freezes.find((freeze) => freeze.from <= iso && iso < freeze.to);
}

/** When changes are next allowed: inside a window and outside every freeze. */
export function nextOpening(from: Date, windows: readonly ChangeWindow[], freezes: readonly Freeze[]): Date | undefined {
  let candidate: Date | undefined = from;
  for (let step = 0; step < 50 && candidate; step++) {
    const freeze = activeFreeze(candidate, freezes);
    if (freeze) {
      candidate = new Date(freeze.to);
      continue;
    }
    const opening = nextWindowOpening(candidate, windows);
    if (!opening || opening.getTime() === candidate.getTime()) return opening;
    candidate = opening;
  }
  return undefined;
}

/** "Mon 09:00 Europe/Berlin" for an instant, in the zone of the first window (UTC without one). */
export function describeOpening(at: Date, zone: string): string {
  const local = zonedParts(at, zone);
  const hh = String(Math.floor(local.minutes / 60)).padStart(2, '0');
  const mm = String(local.minutes % 60).padStart(2, '0');
  const day = local.weekday.charAt(0).toUpperCase() + local.weekday.slice(1);
  return `${day} ${local.year}-${String(local.month).padStart(2, '0')}-${String(local.day).padStart(2, '0')} ${hh}:${mm} ${zone}`;
}
