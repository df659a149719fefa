/**
 * The server's view of system parts at plan time: the templates of a release
 * checked against an environment's vars and secret names (an unknown name
 * refuses the deployment, it never renders as an empty string), and per host
 * what its managed files and packages would become.
 */
import type { RuleResult } from '../../core/gate.js';
import type { Manifest } from '../../core/manifest.js';
import { planSystem, type PlannedRelease, type SystemPlan } from '../../core/system-plan.js';
import { templateProblems } from '../../core/template.js';
import type { ServerContext } from '../context.js';
import { secretNames } from '../secrets/secret-service.js';

/** Largest source the plan reads to render or diff (a managed config file is far smaller). */
const MAX_SOURCE_BYTES = 4 << 20;

/** The sources a release's managed files name, read from the blob store (verified as they are read). */
export async function plannedRelease(context: ServerContext, manifest: Manifest): Promise<PlannedRelease> {
  const sources = new Map<string, Buffer>();
  const files = manifest.system?.files ?? [];
  for (const file of files) {
    if (sources.has(file.source)) continue;
    const entry = manifest.entries.find((candidate) => candidate.path === file.source);
    if (entry?.type !== 'file' || entry.size > MAX_SOURCE_BYTES) continue;
    const blob = await context.blobs.openVerified(entry.sha256, () => undefined);
    if (blob === undefined) continue;
    const chunks: Buffer[] = [];
    for await (const chunk of blob.stream) chunks.push(chunk as Buffer);
    sources.set(file.source, Buffer.concat(chunks));
  }
  return { parts: manifest.system, sources };
}

/**
 * The `templates` rule of a deployment of `manifest` to `env` (vars from lockstep.yaml, secret names from
 * the secrets feature); undefined when the release has no templates, so other plans keep their rules.
 */
export async function templateRule(context: ServerContext, release: PlannedRelease, env: string, vars: Readonly<Record<string, string>>): Promise<RuleResult | undefined> {
  const templates = (release.parts?.files ?? []).filter((file) => file.template);
  if (templates.length === 0) return undefined;
  const secrets = await secretNames(context.store.read, env);
  const problems: string[] = [];
  for (const file of templates) {
    const source = release.sources.get(file.source);
    if (source === undefined) {
      problems.push(`${file.source}: its content could not be read on the server`);
      continue;
    }
    for (const problem of templateProblems(source.toString('utf8'), { vars: Object.keys(vars), secrets })) problems.push(`${file.source}:${problem.line}: ${problem.message}`);
  }
  if (problems.length === 0) return { rule: 'templates', passed: true, detail: `${templates.length === 1 ? '1 template renders' : `${templates.length} templates render`} with ${env}'s vars and secrets` };
  return {
    rule: 'templates',
    passed: false,
    detail: `${problems.join('; ')}; add the missing vars to ${env} in lockstep.yaml (or its secrets), or fix the template in a new release`,
  };
}

/** What a host's system parts would become: `from` is the release it runs (null: none). */
export function hostSystemPlan(
  from: PlannedRelease | null,
  to: PlannedRelease,
  host: { readonly name: string; readonly installed?: Readonly<Record<string, string>> | undefined },
  env: string,
  vars: Readonly<Record<string, string>>,
  secretNames: readonly string[],
): SystemPlan {
  return planSystem(from, to, { vars, host: { name: host.name }, env }, secretNames, host.installed);
}

/** Host name → its installed packages, from the facts each host last reported (hosts without a package database are left out). */
export async function installedPackages(context: ServerContext, hosts: readonly string[]): Promise<Map<string, Readonly<Record<string, string>>>> {
  const out = new Map<string, Readonly<Record<string, string>>>();
  for (const row of await context.store.read.hostFacts(hosts)) {
    const facts = JSON.parse(row.facts) as { packages?: { installed?: Record<string, string> } | null };
    if (facts.packages?.installed !== undefined) out.set(row.host, facts.packages.installed);
  }
  return out;
}
