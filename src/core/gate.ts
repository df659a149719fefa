/**
 * The promotion gate, as a pure function of recorded facts: may a release
 * enter an environment? The verdict lists every rule with its state, and a
 * refusal names the rule and the command that would satisfy it.
 */
import type { Config } from './config.js';
import { shortId } from './manifest.js';

/** What the store knows about one release in one environment. */
export interface ReleaseInEnvironment {
  /** When a deployment of the release last succeeded there (undefined: never). */
  readonly succeededAt?: Date | undefined;
  /** When the environment was rolled back away from the release, or a rollout of it failed there (undefined: never). */
  readonly rolledBackAt?: Date | undefined;
  /** Why it was rolled back or failed, for the refusal. */
  readonly rolledBackReason?: string | undefined;
  /** When someone rejected the release there by hand (`lockstep release reject`). */
  readonly rejectedAt?: Date | undefined;
  readonly rejectedReason?: string | undefined;
}

/** Facts the gate needs; gathered by the caller, so the gate does no I/O. */
export interface GateFacts {
  readonly config: Config;
  readonly environment: string;
  readonly release: { readonly id: string; readonly version: string };
  /** The release's record in the environment it would be promoted from. */
  readonly inSource: ReleaseInEnvironment;
  /** The current release of the source environment. */
  readonly sourceCurrent?: string | undefined;
  /** The release's record in the target environment (a manual rejection there refuses it). */
  readonly inTarget?: ReleaseInEnvironment | undefined;
}

/** One rule's outcome. */
export interface RuleResult {
  readonly rule: string;
  readonly passed: boolean;
  readonly detail: string;
  /** A command that would satisfy the rule, when one exists. */
  readonly fix?: string;
  /** The rule is not failed but not yet satisfied either (approvals still to come). */
  readonly waiting?: boolean;
}

/** The verdict on a deployment request. */
export type Verdict =
  | { readonly kind: 'allowed'; readonly rules: readonly RuleResult[] }
  | { readonly kind: 'refused'; readonly rules: readonly RuleResult[]; readonly reason: string };

/** Evaluates the promotion gate for a release entering an environment. */
export function evaluateGate(facts: GateFacts): Verdict {
  const rules = [promotionRule(facts), rejectionRule(facts)];
  const failed = rules.find((rule) => !rule.passed);
  if (failed) {
    return { kind: 'refused', rules, reason: `${failed.rule}: ${failed.detail}${failed.fix ? `; run: ${failed.fix}` : ''}` };
  }
  return { kind: 'allowed', rules };
}

/** The promotion gate's rule: succeeded (and not rolled back or rejected) in promote_from. */
export function promotionRule(facts: GateFacts): RuleResult {
  const source = facts.config.environments[facts.environment]?.promote_from;
  const name = `${facts.release.version} (${shortId(facts.release.id)})`;
  if (source === undefined) {
    return { rule: 'promotion-gate', passed: true, detail: `${facts.environment} takes releases directly` };
  }
  if (facts.inSource.succeededAt === undefined && facts.inSource.rolledBackAt !== undefined) {
    // A rollout that failed there: redeploying the same release is not the fix to suggest.
    return {
      rule: 'promotion-gate',
      passed: false,
      detail: `release ${name} failed in ${source} and was rolled back at ${facts.inSource.rolledBackAt.toISOString()}${facts.inSource.rolledBackReason ? ` (${facts.inSource.rolledBackReason})` : ''}; it has never succeeded there, so it cannot be promoted to ${facts.environment}`,
    };
  }
  if (facts.inSource.succeededAt === undefined) {
    return {
      rule: 'promotion-gate',
      passed: false,
      detail: `release ${name} has not succeeded in ${source}, which ${facts.environment} promotes from`,
      fix: `lockstep deploy ${shortId(facts.release.id)} --to ${source}`,
    };
  }
  const isCurrent = facts.sourceCurrent === facts.release.id;
  if (facts.inSource.rejectedAt !== undefined) {
    return {
      rule: 'promotion-gate',
      passed: false,
      detail: `release ${name} was rejected in ${source}${facts.inSource.rejectedReason ? ` (${facts.inSource.rejectedReason})` : ''}; it cannot be promoted from there`,
      fix: `lockstep release unreject ${shortId(facts.release.id)} --env ${source}`,
    };
  }
  if (facts.inSource.rolledBackAt !== undefined && !isCurrent) {
    return {
      rule: 'promotion-gate',
      passed: false,
      detail: `release ${name} was rolled back in ${source} at ${facts.inSource.rolledBackAt.toISOString()}${facts.inSource.rolledBackReason ? ` (${facts.inSource.rolledBackReason})` : ''}; deploy it to ${source} again (or a fixed release) before promoting`,
      fix: `lockstep deploy ${shortId(facts.release.id)} --to ${source}`,
    };
  }
  return { rule: 'promotion-gate', passed: true, detail: `succeeded in ${source} at ${facts.inSource.succeededAt.toISOString()}` };
}

/** A release rejected by hand in the target environment may not enter it. */
export function rejectionRule(facts: GateFacts): RuleResult {
  const rejected = facts.inTarget?.rejectedAt;
  if (rejected === undefined) return { rule: 'not-rejected', passed: true, detail: `not rejected in ${facts.environment}` };
  return {
    rule: 'not-rejected',
    passed: false,
    detail: `release ${facts.release.version} (${shortId(facts.release.id)}) was rejected in ${facts.environment}${facts.inTarget?.rejectedReason ? ` (${facts.inTarget.rejectedReason})` : ''}`,
    fix: `lockstep release unreject ${shortId(facts.release.id)} --env ${facts.environment}`,
  };
}
