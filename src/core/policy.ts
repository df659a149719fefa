/**
 * The whole policy verdict on a deployment, as a pure function of recorded
 * facts and the time passed in: the promotion gate, manual rejections, soak
 * time, change windows, freezes and approvals. Each rule says its state in
 * words a person can act on ("soak: 12m of 30m", "window: opens Mon …").
 */
import { activeFreeze, describeOpening, insideWindow, nextOpening, type ChangeWindow, type Freeze } from './change-window.js';
import { formatDuration } from './duration.js';
import { promotionRule, rejectionRule, type GateFacts, type RuleResult } from './gate.js';

/** An environment's policy, as validated by the config schema. */
export interface EnvironmentPolicy {
  readonly approvals: { readonly required: number; readonly expire_after: number };
  readonly windows: readonly ChangeWindow[];
  readonly freezes: readonly Freeze[];
  readonly soak: number;
}

/** Everything the policy needs; the caller gathers it, so evaluation does no I/O. */
export interface PolicyFacts extends GateFacts {
  readonly now: Date;
  readonly policy: EnvironmentPolicy;
  /** Since when the release has been the current release of promote_from (undefined: it is not). */
  readonly sourceCurrentSince?: Date | undefined;
  /** Hosts of promote_from whose latest health report is unhealthy. */
  readonly sourceUnhealthyHosts?: readonly string[];
  /** Approvals a deployment already has, and who may not approve it. */
  readonly approvals?: { readonly granted: number; readonly excluded: readonly string[] };
  /** The oldest fire call of the target environment that was closed and not reconciled. */
  readonly unreconciledFirecall?: { readonly id: number } | undefined;
}

/** The verdict: allowed, waiting for approvals, or refused (naming the first failed rule). */
export type PolicyVerdict =
  | { readonly kind: 'allowed'; readonly rules: readonly RuleResult[] }
  | { readonly kind: 'waiting'; readonly rules: readonly RuleResult[]; readonly reason: string }
  | { readonly kind: 'refused'; readonly rules: readonly RuleResult[]; readonly reason: string };

/** Evaluates every rule of the target environment's policy. */
export function evaluatePolicy(facts: PolicyFacts): PolicyVerdict {
  const rules = [promotionRule(facts), rejectionRule(facts), firecallRule(facts), soakRule(facts), windowRule(facts), freezeRule(facts), approvalsRule(facts)];
  const failed = rules.find((rule) => !rule.passed && !rule.waiting);
  if (failed) return { kind: 'refused', rules, reason: `${failed.rule}: ${failed.detail}${failed.fix ? `; run: ${failed.fix}` : ''}` };
  const waiting = rules.find((rule) => rule.waiting);
  if (waiting) return { kind: 'waiting', rules, reason: `${waiting.rule}: ${waiting.detail}` };
  return { kind: 'allowed', rules };
}

/** What was changed under a fire call must be reverted or adopted before anything else enters the environment. */
function firecallRule(facts: PolicyFacts): RuleResult {
  const firecall = facts.unreconciledFirecall;
  if (firecall === undefined) return { rule: 'firecall', passed: true, detail: `no unreconciled fire call in ${facts.environment}` };
  return {
    rule: 'firecall',
    passed: false,
    detail: `fire call ${firecall.id} on ${facts.environment} is not reconciled: run \`lockstep firecall reconcile ${firecall.id} --revert\` or \`--adopt --version V\``,
  };
}

function soakRule(facts: PolicyFacts): RuleResult {
  const source = facts.config.environments[facts.environment]?.promote_from;
  const soak = facts.policy.soak;
  if (soak === 0 || source === undefined) return { rule: 'soak', passed: true, detail: 'no soak time' };
  if (facts.sourceCurrentSince === undefined) {
    return { rule: 'soak', passed: false, detail: `the release is not the current release of ${source}; it must run there for ${formatDuration(soak)} first` };
  }
  const unhealthy = facts.sourceUnhealthyHosts ?? [];
  if (unhealthy.length > 0) return { rule: 'soak', passed: false, detail: `hosts of ${source} are unhealthy: ${unhealthy.join(', ')}` };
  const elapsed = facts.now.getTime() - facts.sourceCurrentSince.getTime();
  if (elapsed < soak) {
    return { rule: 'soak', passed: false, detail: `${formatDuration(elapsed)} of ${formatDuration(soak)} in ${source}; ready in ${formatDuration(soak - elapsed)}` };
  }
  return { rule: 'soak', passed: true, detail: `${formatDuration(elapsed)} of ${formatDuration(soak)} in ${source}` };
}

function windowRule(facts: PolicyFacts): RuleResult {
  const windows = facts.policy.windows;
  if (windows.length === 0) return { rule: 'window', passed: true, detail: 'no change windows (any time)' };
  const inside = windows.find((window) => insideWindow(facts.now, window));
  if (inside) return { rule: 'window', passed: true, detail: `inside ${describeWindow(inside)}` };
  const opens = nextOpening(facts.now, windows, facts.policy.freezes);
  const zone = windows[0]?.timezone ?? 'UTC';
  return {
    rule: 'window',
    passed: false,
    detail: opens ? `closed; opens ${describeOpening(opens, zone)}, in ${formatDuration(opens.getTime() - facts.now.getTime())}` : 'closed; no opening in the next 8 days',
  };
}

function freezeRule(facts: PolicyFacts): RuleResult {
  const freeze = activeFreeze(facts.now, facts.policy.freezes);
  if (!freeze) return { rule: 'freeze', passed: true, detail: 'no freeze in force' };
  const opens = nextOpening(facts.now, facts.policy.windows, facts.policy.freezes);
  const zone = facts.policy.windows[0]?.timezone ?? 'UTC';
  return {
    rule: 'freeze',
    passed: false,
    detail: `frozen until ${freeze.to} (${freeze.reason})${opens ? `; opens ${describeOpening(opens, zone)}, in ${formatDuration(opens.getTime() - facts.now.getTime())}` : ''}`,
  };
}

function approvalsRule(facts: PolicyFacts): RuleResult {
  const required = facts.policy.approvals.required;
  if (required === 0) return { rule: 'approvals', passed: true, detail: 'no approvals required' };
  const granted = facts.approvals?.granted ?? 0;
  if (granted >= required) return { rule: 'approvals', passed: true, detail: `${granted} of ${required} approvals` };
  const excluded = facts.approvals?.excluded ?? [];
  return {
    rule: 'approvals',
    passed: false,
    waiting: true,
    detail: `${granted} of ${required} approvals (tokens with the approver role${excluded.length ? `, not ${excluded.join(' or ')}` : ''})`,
    fix: 'lockstep approve DEPLOYMENT',
  };
}

function describeWindow(window: ChangeWindow): string {
  return `window ${window.days.join(',')} ${window.hours} ${window.timezone}`;
}

/**
 * Separation of duties, shared by deployments and fire calls: why `approver` may not approve a
 * request (undefined: it may). `roles` approve; each of `excluded` may not, for the reason given.
 */
export function approvalRefusal(approver: { readonly name: string; readonly role: string }, roles: readonly string[], excluded: readonly { readonly name: string; readonly because: string }[]): string | undefined {
  if (!roles.includes(approver.role)) return `approvals must come from tokens with the ${roles.join(' or ')} role; ${approver.name} has the ${approver.role} role`;
  const self = excluded.find((person) => person.name === approver.name);
  return self ? `separation of duties: ${self.because}` : undefined;
}

/** The verdict with one more rule: a failed rule refuses (named first in the reason when nothing else refused), a passed one only joins the list. */
export function withRule(verdict: PolicyVerdict, rule: RuleResult): PolicyVerdict {
  const rules = [...verdict.rules, rule];
  if (verdict.kind === 'refused' || rule.passed || rule.waiting) return { ...verdict, rules };
  return { kind: 'refused', rules, reason: `${rule.rule}: ${rule.detail}${rule.fix ? `; run: ${rule.fix}` : ''}` };
}
