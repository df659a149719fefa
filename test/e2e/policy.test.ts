/**
 * Policy end to end, as people meet it: tokens with roles and environment
 * scopes (shown once, stored hashed, named in the audit trail), approvals
 * with separation of duties, rejection and expiry, change windows and
 * freezes, soak time, rollbacks (allowed in a freeze, reason required when
 * configured), the admin override (audited and alerted), policy changes as
 * admin actions with their diff audited, and `lockstep changes`.
 * Real server, real agents, real CLI; nothing mocked.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { shortId } from '../../src/core/manifest.js';
import { hashToken } from '../../src/server/http/tokens.js';
import { startFleet, writeApp, type CliResult, type Fleet } from '../helpers/fleet.js';
import { assertExit, releaseIdFrom } from './host-tree.js';
import { until } from '../helpers/until.js';
import type { DeploymentView } from '../../src/api/schemas.js';

/** What `--json` prints for a deployment: the API's view of it. */
type DeploymentJson = DeploymentView;
interface AuditJson {
  seq: number;
  actor: string;
  action: string;
  details: Record<string, unknown>;
}
interface PlanJson {
  verdict: { kind: string; reason?: string; rules: { rule: string; passed: boolean; waiting?: boolean; detail: string }[] };
}
interface ChangeJson {
  at: string;
  env: string | null;
  kind: string;
  actor: string;
  what: string;
  why: string | null;
  result: string;
  wayBack: string | null;
}

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];

/** A lockstep.yaml with extra (already indented-free) lines per environment; production alerts go to `webhook`. */
function config(webhook: string, extra: { development?: string[]; production?: string[] } = {}): string {
  const lines = (more: string[] | undefined) => (more ?? []).map((text) => `    ${text}\n`).join('');
  return `app: app
deploy_to: /srv/app
environments:
  development:
    host_timeout: 20s
${lines(extra.development)}  test:
    promote_from: development
    host_timeout: 20s
  production:
    promote_from: test
    host_timeout: 20s
    alerts: { webhooks: ["${webhook}"] }
${lines(extra.production)}`;
}

describe('policy: roles, approvals, windows, freezes, soak, override, changes', () => {
  let fleet: Fleet;
  let hook: Server;
  let hookUrl: string;
  const alerts: { kind: string; summary: string; env: string }[] = [];
  const tokens: Record<string, string> = {};
  const ids: Record<string, string> = {};
  let humanToken = '';

  const as = (name: string) => ({ env: { LOCKSTEP_TOKEN: tokens[name] ?? '' } });
  const apply = async (yaml: string, token = fleet.token): Promise<CliResult> => {
    const file = join(fleet.dir, `policy-${Date.now()}-${Math.random().toString(16).slice(2)}.yaml`);
    await writeFile(file, yaml);
    return fleet.cli(['apply', '-f', file], { env: { LOCKSTEP_TOKEN: token } });
  };
  const audit = async () => JSON.parse(await fleet.ok(['audit', 'log', '--json'])) as AuditJson[];
  const history = async (env: string) => ((await fleet.http('GET', `/api/v1/history?env=${env}`)).json as { deployments: DeploymentJson[] }).deployments;
  /** Waits until a deployment to `env` waits for approval; returns its id. */
  const awaiting = (env: string) => until(`a deployment to ${env} awaiting approval`, async () => (await history(env)).find((d) => d.state === 'awaiting_approval')?.id);
  const deploy = async (version: string, env: string) => assertExit(await fleet.cli(['deploy', ids[version] ?? '', '--to', env]), 0, `deploy ${version} to ${env}`);

  before(async () => {
    hook = createServer((request, response) => {
      let body = '';
      request.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      request.on('end', () => {
        alerts.push(JSON.parse(body) as (typeof alerts)[number]);
        response.writeHead(204).end();
      });
    });
    await new Promise<void>((done) => hook.listen(0, '127.0.0.1', done));
    const address = hook.address();
    hookUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/hook`;

    fleet = await startFleet();
    const applied = await apply(config(hookUrl));
    assertExit(applied, 0, 'apply the starting config');
    await Promise.all([fleet.addAgent('dev-1', 'development'), fleet.addAgent('test-1', 'test'), fleet.addAgent('prod-1', 'production')]);
    for (const version of ['1.0.0', '2.0.0', '3.0.0']) {
      const dir = await writeApp(join(fleet.dir, `build-${version}`), version);
      const created = await fleet.cli(['release', 'create', dir, '--version', version]);
      assertExit(created, 0, `release create ${version}`);
      ids[version] = releaseIdFrom(created.stdout);
    }
    await deploy('1.0.0', 'development');
    await deploy('1.0.0', 'test');
  });

  after(async () => {
    await fleet?.stop();
    await new Promise((done) => hook?.close(done));
  });

  it('token create shows the token once; token list never does; the database holds only hashes', async () => {
    const human = await fleet.cli(['token', 'create', 'ci', '--role', 'deployer']);
    assertExit(human, 0, 'token create ci');
    const [header, secret, ...rest] = human.stdout.trim().split('\n');
    assert.match(header ?? '', /^token ci \(deployer, all environments\); shown once, store it now:$/);
    assert.match(secret ?? '', /^lsu_[A-Za-z0-9_-]{20,}$/);
    assert.deepEqual(rest, []);
    tokens.ci = humanToken = secret ?? '';
    for (const [name, role, envs] of [
      ['alice', 'approver', []],
      ['bob', 'approver', []],
      ['dev-deployer', 'deployer', ['development', 'test']],
      ['watcher', 'viewer', []],
    ] as const) {
      const created = await fleet.cli(['token', 'create', name, '--role', role, ...(envs.length ? ['--env', ...envs] : []), '--json']);
      assertExit(created, 0, `token create ${name}`);
      const json = JSON.parse(created.stdout) as { name: string; role: string; envs: string[] | null; token: string };
      assert.deepEqual([json.name, json.role, json.envs], [name, role, envs.length ? [...envs] : null]);
      tokens[name] = json.token;
    }

    const list = await fleet.cli(['token', 'list', '--json']);
    assertExit(list, 0, 'token list');
    const listed = JSON.parse(list.stdout) as { name: string; role: string; envs: string[] | null; revokedAt: string | null }[];
    assert.deepEqual(
      listed.map((t) => [t.name, t.role, t.envs]).sort(),
      [
        ['admin', 'admin', null],
        ['alice', 'approver', null],
        ['bob', 'approver', null],
        ['ci', 'deployer', null],
        ['dev-deployer', 'deployer', ['development', 'test']],
        ['watcher', 'viewer', null],
      ],
    );
    for (const secretText of [...Object.values(tokens), fleet.token]) assert.ok(!list.stdout.includes(secretText), 'token list shows no secret');
    const human2 = await fleet.cli(['token', 'list']);
    assert.match(human2.stdout, /dev-deployer\s+deployer\s+development,test/);

    // The database (and its WAL) hold no token text, only the SHA-256 of each.
    const files = (await readdir(fleet.dataDir)).filter((file) => file.startsWith('lockstep.db'));
    assert.ok(files.includes('lockstep.db'));
    const secrets = [...Object.values(tokens), fleet.token];
    for (const file of files) {
      const bytes = await readFile(join(fleet.dataDir, file));
      for (const secretText of secrets) {
        assert.equal(bytes.indexOf(secretText), -1, `${file} holds no token text`);
        assert.equal(bytes.indexOf(secretText.slice(4)), -1, `${file} holds no token text without its prefix`);
      }
    }
    const db = new Database(join(fleet.dataDir, 'lockstep.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare('SELECT * FROM tokens').all() as Record<string, unknown>[];
      const cells = rows.flatMap((row) => Object.values(row).map(String));
      for (const secretText of secrets) assert.ok(!cells.some((cell) => cell.includes(secretText)), 'no column holds a token');
      const ci = rows.find((row) => row.name === 'ci');
      assert.equal(ci?.token_hash, hashToken(humanToken), 'the stored form is the hash');
    } finally {
      db.close();
    }
  });

  it('a revoked token and a wrong token get the same refusal (exit 5); a viewer changes nothing', async () => {
    const viewerStatus = await fleet.cli(['status', '--json'], as('watcher'));
    assertExit(viewerStatus, 0, 'a viewer reads status');
    const viewerDeploy = await fleet.cli(['deploy', ids['1.0.0'] ?? '', '--to', 'development'], as('watcher'));
    assertExit(viewerDeploy, 5, 'a viewer deploys');
    assert.match(viewerDeploy.stderr, /token watcher \(role viewer\) may not do this; it needs the deployer role/);

    assertExit(await fleet.cli(['token', 'revoke', 'watcher']), 0, 'token revoke');
    const listed = JSON.parse(await fleet.ok(['token', 'list', '--json'])) as { name: string; revokedAt: string | null }[];
    assert.ok(listed.find((t) => t.name === 'watcher')?.revokedAt, 'listed as revoked');
    const [revoked, wrong, byName] = await Promise.all([
      fleet.cli(['status'], as('watcher')),
      fleet.cli(['status'], { env: { LOCKSTEP_TOKEN: 'lsu_thisIsNotAToken' } }),
      fleet.cli(['status'], { env: { LOCKSTEP_TOKEN: 'alice' } }),
    ]);
    for (const result of [revoked, wrong, byName]) {
      assertExit(result, 5, 'a bad token');
      assert.equal(result.stderr, revoked.stderr, 'one message, whether the token was revoked, wrong, or a name');
    }
    assert.match(revoked.stderr, /invalid or revoked token/);
    assert.doesNotMatch(revoked.stderr, /watcher/);
  });

  it('approvals: production waits for two approvers; the creator, the requester and deployers cannot approve; then it runs', async () => {
    assertExit(await apply(config(hookUrl, { production: ['approvals: { required: 2, expire_after: 1h }'] })), 0, 'apply approvals');

    const scoped = await fleet.cli(['deploy', ids['1.0.0'] ?? '', '--to', 'production'], as('dev-deployer'));
    assertExit(scoped, 5, 'a deployer for development and test deploys to production');
    assert.match(scoped.stderr, /token dev-deployer may not act on production \(its environments: development, test\)/);

    const running = fleet.cli(['deploy', ids['1.0.0'] ?? '', '--to', 'production', '--reason', 'first production release'], as('ci'));
    const id = await awaiting('production');

    const plan = JSON.parse((await fleet.cli(['plan', ids['1.0.0'] ?? '', '--to', 'production', '--json'], as('ci'))).stdout) as PlanJson;
    assert.equal(plan.verdict.kind, 'waiting');
    assert.match(plan.verdict.reason ?? '', /^approvals: 0 of 2 approvals \(tokens with the approver role, not ci or admin\)/);

    const [byCreator, byRequester, byDeployer] = await Promise.all([
      fleet.cli(['approve', String(id)]), // admin created the release
      fleet.cli(['approve', String(id)], as('ci')),
      fleet.cli(['approve', String(id)], as('dev-deployer')),
    ]);
    assertExit(byCreator, 5, 'the release creator (admin) approves');
    assert.match(byCreator.stderr, /approvals must come from tokens with the approver role; admin has the admin role/);
    assertExit(byRequester, 5, 'the requester (a deployer) approves');
    assert.match(byRequester.stderr, /token ci \(role deployer\) may not do this; it needs the approver role/);
    assertExit(byDeployer, 5, 'another deployer approves');

    const first = await fleet.cli(['approve', String(id), '--comment', 'looks good'], as('alice'));
    assertExit(first, 0, 'alice approves');
    assert.match(first.stdout, new RegExp(`approved deployment #${id} \\(1 approval\\); it is awaiting approval`));
    const again = await fleet.cli(['approve', String(id)], as('alice'));
    assertExit(again, 3, 'alice approves twice');
    assert.match(again.stderr, /alice already decided/);
    assertExit(await fleet.cli(['approve', String(id)], as('bob')), 0, 'bob approves');

    const result = await running;
    assertExit(result, 0, 'the waiting deploy finishes');
    assert.match(result.stdout, new RegExp(`deployment #${id} is waiting for approval; approvers run: lockstep approve ${id}`));
    assert.match(result.stdout, /succeeded in .*: production runs 1\.0\.0/);

    const events = (await audit()).filter((event) => event.details.deployment === id);
    assert.deepEqual(
      events.map((event) => [event.action, event.actor]),
      [
        ['deployment.requested', 'ci'],
        ['deployment.approved', 'alice'],
        ['deployment.approved', 'bob'],
        ['deployment.started', 'lockstep'],
        ['deployment.succeeded', 'lockstep'],
      ],
    );
  });

  it('approvals: an approver rejecting ends the waiting deploy (exit 3); an unapproved one expires (exit 3)', async () => {
    await deploy('2.0.0', 'development');
    await deploy('2.0.0', 'test');
    const running = fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production'], as('ci'));
    const id = await awaiting('production');
    const rejected = await fleet.cli(['reject', String(id), '--reason', 'not during the sale'], as('bob'));
    assertExit(rejected, 0, 'bob rejects');
    assert.match(rejected.stdout, new RegExp(`rejected deployment #${id}: it will not run`));
    const result = await running;
    assertExit(result, 3, 'the rejected deploy');
    assert.match(result.stderr, new RegExp(`deployment #${id} was rejected: rejected by bob: not during the sale`));

    assertExit(await apply(config(hookUrl, { production: ['approvals: { required: 1, expire_after: 2s }'] })), 0, 'apply a short expiry');
    const expired = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production'], as('ci'));
    assertExit(expired, 3, 'an unapproved deploy');
    assert.match(expired.stderr, /deployment #\d+ was expired: not approved within 2s/);
    const [last] = await history('production');
    assert.equal(last?.state, 'expired');
  });

  it('a closed window and a freeze refuse (exit 3) naming the next opening and the reason; plan changes nothing', async () => {
    const closedDay = DAYS[(new Date().getUTCDay() + 2) % 7] ?? 'sun'; // neither today nor tomorrow (UTC)
    assertExit(await apply(config(hookUrl, { production: [`windows: [{ days: [${closedDay}], hours: "00:00-24:00", timezone: UTC }]`] })), 0, 'apply a closed window');
    const before = (await history('production')).length;
    const planned = await fleet.cli(['plan', ids['2.0.0'] ?? '', '--to', 'production', '--json'], as('ci'));
    assertExit(planned, 3, 'plan in a closed window');
    const plan = JSON.parse(planned.stdout) as PlanJson;
    assert.equal(plan.verdict.kind, 'refused');
    const rules = Object.fromEntries(plan.verdict.rules.map((rule) => [rule.rule, rule]));
    assert.deepEqual(Object.keys(rules), ['promotion-gate', 'not-rejected', 'firecall', 'soak', 'window', 'freeze', 'approvals']);
    assert.equal(rules.window?.passed, false);
    assert.match(rules.window?.detail ?? '', new RegExp(`^closed; opens ${closedDay.charAt(0).toUpperCase()}${closedDay.slice(1)} \\d{4}-\\d\\d-\\d\\d 00:00 UTC, in \\d+h`));
    assert.deepEqual([rules['promotion-gate']?.passed, rules.firecall?.passed, rules.soak?.passed, rules.freeze?.passed, rules.approvals?.passed], [true, true, true, true, true]);
    assert.equal((await history('production')).length, before, 'plan created no deployment');

    const refused = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production'], as('ci'));
    assertExit(refused, 3, 'deploy in a closed window');
    assert.match(refused.stderr, /^lockstep: window: closed; opens \w{3} \d{4}-\d\d-\d\d 00:00 UTC, in /m);
    assert.equal((await history('production')).length, before, 'a refused deploy creates no deployment');

    const from = new Date(Date.now() - 86_400_000).toISOString();
    const to = new Date(Date.now() + 86_400_000).toISOString();
    assertExit(await apply(config(hookUrl, { production: [`freezes: [{ from: "${from}", to: "${to}", reason: quarterly close }]`] })), 0, 'apply a freeze');
    const frozen = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production'], as('ci'));
    assertExit(frozen, 3, 'deploy in a freeze');
    assert.match(frozen.stderr, /^lockstep: freeze: frozen until \S+ \(quarterly close\)/m);
    const frozenPlan = JSON.parse((await fleet.cli(['plan', ids['2.0.0'] ?? '', '--to', 'production', '--json'], as('ci'))).stdout) as PlanJson;
    assert.match(frozenPlan.verdict.rules.find((rule) => rule.rule === 'freeze')?.detail ?? '', /\(quarterly close\)/);
    const refusals = (await audit()).filter((event) => event.action === 'deployment.refused');
    assert.ok(refusals.some((event) => event.actor === 'ci' && /quarterly close/.test(String(event.details.reason))), 'the refusal is audited with its actor');
  });

  it('a rollback is allowed even in a freeze, but needs a reason when the policy says so; it is audited', async () => {
    const from = new Date(Date.now() - 86_400_000).toISOString();
    const to = new Date(Date.now() + 86_400_000).toISOString();
    assertExit(
      await apply(config(hookUrl, { development: [`freezes: [{ from: "${from}", to: "${to}", reason: code freeze }]`, 'rollback: { require_reason: true }'] })),
      0,
      'apply a development freeze',
    );
    const noReason = await fleet.cli(['rollback', 'development'], as('ci'));
    assertExit(noReason, 3, 'rollback without a reason');
    assert.match(noReason.stderr, /requires a reason for rollbacks: lockstep rollback development --reason TEXT/);
    const rolledBack = await fleet.cli(['rollback', 'development', '--reason', 'bad build'], as('ci'));
    assertExit(rolledBack, 0, 'rollback in a freeze');
    assert.match(rolledBack.stdout, /succeeded in .*: development runs 1\.0\.0/);
    const started = (await audit()).filter((event) => event.action === 'rollback.started').at(-1);
    assert.equal(started?.actor, 'ci');
    assert.equal(started?.details.reason, 'bad build');
  });

  it('override: only an admin, only with a reason, never where allow_override is false; audited and alerted', async () => {
    const closedDay = DAYS[(new Date().getUTCDay() + 2) % 7] ?? 'sun';
    const window = `windows: [{ days: [${closedDay}], hours: "00:00-24:00", timezone: UTC }]`;
    assertExit(await apply(config(hookUrl, { production: [window, 'allow_override: false'] })), 0, 'apply allow_override: false');
    const byDeployer = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production', '--override', '--reason', 'x'], as('ci'));
    assertExit(byDeployer, 5, 'a deployer overrides');
    assert.match(byDeployer.stderr, /only the admin role may override policy; token ci has the deployer role/);
    const forbidden = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production', '--override', '--reason', 'x']);
    assertExit(forbidden, 3, 'an override where allow_override is false');
    assert.match(forbidden.stderr, /production forbids overrides \(allow_override: false\)/);

    assertExit(await apply(config(hookUrl, { production: [window] })), 0, 'apply overrides allowed');
    const overridden = await fleet.cli(['deploy', ids['2.0.0'] ?? '', '--to', 'production', '--override', '--reason', 'hotfix for the outage']);
    assertExit(overridden, 0, 'an admin override');
    assert.match(overridden.stderr, /policy overridden \(hotfix for the outage\); this is audited and alerted/);
    assert.match(overridden.stdout, /production runs 2\.0\.0/);

    const event = (await audit()).find((candidate) => candidate.action === 'deployment.override');
    assert.equal(event?.actor, 'admin');
    assert.equal(event?.details.reason, 'hotfix for the outage');
    assert.ok((event?.details.overridden as string[]).some((text) => text.startsWith('window: closed; opens ')));
    assert.ok((await audit()).some((candidate) => candidate.action === 'deployment.override_refused'), 'the refused override is audited too');
    const alert = await until('the override alert', async () => alerts.find((candidate) => candidate.kind === 'deployment.override'), 15_000);
    assert.equal(alert.env, 'production');
    assert.match(alert.summary, /admin overrode policy to deploy app@2\.0\.0 to production: hotfix for the outage/);
  });

  it('policy changes are admin-only and audited with their diff; soak refuses until the release has soaked', async () => {
    await deploy('3.0.0', 'development');
    await deploy('3.0.0', 'test');
    const longSoak = config(hookUrl, { production: ['soak: 1h'] });
    const byDeployer = await apply(longSoak, tokens.ci);
    assertExit(byDeployer, 5, 'a deployer applies lockstep.yaml');
    assert.match(byDeployer.stderr, /token ci \(role deployer\) may not do this; it needs the admin role/);

    assertExit(await apply(longSoak), 0, 'an admin applies soak: 1h');
    const refused = await fleet.cli(['deploy', ids['3.0.0'] ?? '', '--to', 'production'], as('ci'));
    assertExit(refused, 3, 'deploy before the soak time');
    assert.match(refused.stderr, /^lockstep: soak: \S+ of 1h in test; ready in \S+/m);

    assertExit(await apply(config(hookUrl, { production: ['soak: 2s'] })), 0, 'an admin applies soak: 2s');
    const applied = (await audit()).filter((event) => event.action === 'config.applied').at(-1);
    assert.equal(applied?.actor, 'admin');
    assert.deepEqual(applied?.details.policyChanges, [{ env: 'production', field: 'soak', before: 3_600_000, after: 2_000 }]);

    const plan = await until('the soak to pass', async () => {
      const result = await fleet.cli(['plan', ids['3.0.0'] ?? '', '--to', 'production', '--json'], as('ci'));
      const json = JSON.parse(result.stdout) as PlanJson;
      return json.verdict.kind === 'allowed' ? json : undefined;
    });
    assert.match(plan.verdict.rules.find((rule) => rule.rule === 'soak')?.detail ?? '', /^\S+ of 2s in test$/);
    assertExit(await fleet.cli(['deploy', ids['3.0.0'] ?? '', '--to', 'production', '--reason', 'soaked'], as('ci')), 0, 'deploy after the soak time');
  });

  it('lockstep changes lists deployments and rollbacks with actor, reason, result and the way back (--json, --markdown)', async () => {
    const result = await fleet.cli(['changes', '--since', '1h', '--json'], as('alice'));
    assertExit(result, 0, 'changes --json');
    const { changes } = JSON.parse(result.stdout) as { since: string; changes: ChangeJson[] };
    const find = (what: RegExp) => changes.find((change) => what.test(change.what));
    const v1 = shortId(ids['1.0.0'] ?? '');
    const v2 = shortId(ids['2.0.0'] ?? '');

    const latest = find(/^deployment #\d+ of app@3\.0\.0 \(was 2\.0\.0\)$/);
    assert.deepEqual(
      latest && [latest.env, latest.kind, latest.actor, latest.why, latest.result, latest.wayBack],
      ['production', 'deployment', 'ci', 'soaked', 'succeeded', `lockstep rollback production --to ${v2}`],
    );
    const override = find(/^deployment #\d+ of app@2\.0\.0 \(was 1\.0\.0\)$/);
    assert.equal(override?.actor, 'admin');
    assert.equal(override?.why, 'hotfix for the outage');
    assert.equal(override?.result, 'succeeded (policy overridden: hotfix for the outage)');
    assert.equal(override?.wayBack, `lockstep rollback production --to ${v1}`);
    const rollback = changes.find((change) => change.kind === 'rollback');
    assert.deepEqual(rollback && [rollback.env, rollback.actor, rollback.why, rollback.result], ['development', 'ci', 'bad build', 'succeeded']);
    assert.match(rollback?.what ?? '', /^rollback #\d+ to app@1\.0\.0 \(was 2\.0\.0\)$/);
    assert.deepEqual(
      changes.filter((change) => change.env === 'production' && change.kind === 'deployment').map((change) => change.result).sort(),
      ['expired', 'rejected', 'succeeded', 'succeeded', 'succeeded (policy overridden: hotfix for the outage)'].sort(),
    );
    assert.ok(changes.some((change) => change.kind === 'config' && /policy changed/.test(change.what)), 'policy changes are listed');
    const ordered = changes.map((change) => change.at);
    assert.deepEqual(ordered, [...ordered].sort().reverse(), 'newest first');

    const markdown = await fleet.cli(['changes', '--since', '1h', '--markdown'], as('alice'));
    assertExit(markdown, 0, 'changes --markdown');
    const lines = markdown.stdout.trim().split('\n');
    assert.match(lines[0] ?? '', /^# Changes since /);
    assert.equal(lines[2], '| when | env | who | what | why | result | way back |');
    assert.equal(lines[3], '| --- | --- | --- | --- | --- | --- | --- |');
    assert.equal(lines.length, 4 + changes.length, 'one row per change');
    assert.ok(lines.some((text) => text.includes('| production | admin |') && text.includes(`\`lockstep rollback production --to ${v1}\``)));
  });
});
