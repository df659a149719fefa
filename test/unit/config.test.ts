import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ConfigError, parseConfig, promotionOrder, secretsInEnvOf, STARTER_CONFIG, type ConfigProblem } from '../../src/core/config.js';
import { LockstepError } from '../../src/core/errors.js';

/** Parses `text`, expecting it to be rejected; returns the error. */
function rejected(text: string, file = 'lockstep.yaml'): ConfigError {
  try {
    parseConfig(text, file);
  } catch (error) {
    assert.ok(error instanceof ConfigError, `expected a ConfigError, got ${String(error)}`);
    return error;
  }
  assert.fail('the config was accepted');
}

/** The problems as `line:column field: message` strings, easy to compare. */
function problems(text: string): string[] {
  return rejected(text).problems.map((p: ConfigProblem) => `${p.line}:${p.column} ${p.field}: ${p.message}`);
}

/** What every environment gets when it says nothing about rollouts, health, hooks or alerts. */
const ENV_DEFAULTS = {
  rollout: { canary: 1, batch: '25%', pause: 0, max_failures: 0 },
  health: { checks: [], interval: 1000, healthy_after: 1, timeout: 60_000, watch_interval: 30_000 },
  hooks: { timeout: 60_000 },
  alerts: { webhooks: [] },
  approvals: { required: 0, expire_after: 86_400_000 },
  windows: [],
  freezes: [],
  soak: 0,
  rollback: { require_reason: false },
  allow_override: true,
  declared_differences: [],
};

/** What a config gets when it says nothing about watched paths or scans. */
const TOP_DEFAULTS = { watch: [], drift: { scan_interval: 300_000, full_scan_interval: 86_400_000, scan: { nice: 10, ionice: 'idle' } } };

const MINIMAL = `app: shop
deploy_to: /srv/shop/
environments:
  test: {}
`;

describe('parseConfig', () => {
  it('accepts the starter config written by lockstep init', () => {
    assert.deepEqual(parseConfig(STARTER_CONFIG), {
      app: 'shop',
      deploy_to: '/srv/shop',
      keep_releases: 5,
      ...TOP_DEFAULTS,
      environments: {
        development: { vars: { LOG_LEVEL: 'debug' }, host_timeout: 120_000, ...ENV_DEFAULTS },
        test: { promote_from: 'development', vars: { LOG_LEVEL: 'info' }, host_timeout: 120_000, ...ENV_DEFAULTS },
        production: { promote_from: 'test', vars: { LOG_LEVEL: 'info' }, host_timeout: 120_000, ...ENV_DEFAULTS },
      },
    });
  });

  it('fills in defaults and normalises deploy_to', () => {
    assert.deepEqual(parseConfig(MINIMAL), {
      app: 'shop',
      deploy_to: '/srv/shop',
      keep_releases: 5,
      ...TOP_DEFAULTS,
      environments: { test: { vars: {}, host_timeout: 120_000, ...ENV_DEFAULTS } },
    });
  });

  it('reads watched paths, scan intervals and email alerts, and locates their mistakes', () => {
    const config = parseConfig(`app: shop
deploy_to: /srv/shop
watch:
  - path: /etc/nginx/
    exclude: ['*.bak']
drift:
  scan_interval: 30s
environments:
  production:
    alerts:
      email: { smtp: 'smtp://127.0.0.1:2525', from: lockstep@example.com, to: [ops@example.com] }
`);
    assert.deepEqual(config.watch, [{ path: '/etc/nginx', include: [], exclude: ['*.bak'] }]);
    assert.deepEqual(config.drift, { scan_interval: 30_000, full_scan_interval: 86_400_000, scan: { nice: 10, ionice: 'idle' } });
    assert.deepEqual(config.environments.production?.alerts.email, { smtp: 'smtp://127.0.0.1:2525', from: 'lockstep@example.com', to: ['ops@example.com'] });
    assert.deepEqual(
      problems(`app: shop
deploy_to: /srv/shop
watch:
  - path: etc/nginx
environments:
  production:
    alerts:
      email: { smtp: 'smtp://user:secret@mail:25', from: lockstep, to: [] }
`),
      [
        '4:11 watch.0.path: expected an absolute path without ".." segments; found "etc/nginx"',
        '8:22 environments.production.alerts.email.smtp: expected smtp://HOST:PORT or smtps://HOST:PORT (no credentials in the URL); found "smtp://user:secret@mail:25"',
        '8:58 environments.production.alerts.email.from: expected an email address such as lockstep@example.com; found "lockstep"',
        '8:72 environments.production.alerts.email.to: expected at least one recipient; found a list',
      ],
    );
  });

  it('reads how politely scans run (drift.scan), and locates its mistakes', () => {
    const config = parseConfig(`app: shop
deploy_to: /srv/shop
drift:
  scan: { nice: 15, ionice: best-effort, max_read_mb_s: 40 }
environments:
  production: {}
`);
    assert.deepEqual(config.drift.scan, { nice: 15, ionice: 'best-effort', max_read_mb_s: 40 });
    const found = problems(`app: shop
deploy_to: /srv/shop
drift:
  scan: { nice: 25, ionice: realtime, max_read_mb_s: 0 }
environments:
  production: {}
`);
    assert.equal(found.length, 3, found.join('\n'));
    assert.match(found[0] ?? '', /^4:\d+ drift\.scan\.nice: expected a nice value 0\.\.19/);
    assert.match(found[1] ?? '', /^4:\d+ drift\.scan\.ionice: /);
    assert.match(found[2] ?? '', /^4:\d+ drift\.scan\.max_read_mb_s: expected a positive number of MB per second/);
  });

  it('reads durations and turns scalar vars into strings', () => {
    const config = parseConfig(`app: shop
deploy_to: /
keep_releases: 2
environments:
  test:
    host_timeout: 1h30m
    vars:
      PORT: 8080
      DEBUG: true
      NAME: shop
`);
    assert.equal(config.deploy_to, '/');
    assert.equal(config.keep_releases, 2);
    assert.equal(config.environments.test?.host_timeout, 90 * 60_000);
    assert.deepEqual(config.environments.test?.vars, { PORT: '8080', DEBUG: 'true', NAME: 'shop' });
  });

  it('rejects unknown keys at their line:column and suggests the key that was meant', () => {
    const error = rejected(
      `app: shop
deploy_to: /srv/shop
keep_relases: 3
environments:
  test:
    promte_from: dev
`,
      'conf/lockstep.yaml',
    );
    assert.deepEqual(error.problems, [
      { line: 3, column: 1, field: 'keep_relases', message: 'unknown key "keep_relases" (did you mean "keep_releases"?)' },
      { line: 6, column: 5, field: 'environments.test.promte_from', message: 'unknown key "promte_from" (did you mean "promote_from"?)' },
    ]);
    assert.equal(error.kind, 'bad-input');
    assert.ok(error instanceof LockstepError);
    assert.equal(
      error.message,
      [
        'conf/lockstep.yaml:3:1: keep_relases: unknown key "keep_relases" (did you mean "keep_releases"?)',
        'conf/lockstep.yaml:6:5: environments.test.promte_from: unknown key "promte_from" (did you mean "promote_from"?)',
      ].join('\n'),
    );
  });

  it('lists the known keys when an unknown key resembles none of them', () => {
    assert.deepEqual(problems(`app: shop\ndeploy_to: /srv\nwebhooks: 1\nenvironments:\n  a: {}\n`), [
      '3:1 webhooks: unknown key "webhooks" (expected one of app, deploy_to, keep_releases, watch, drift, secrets_in_env, parity, environments)',
    ]);
  });

  it('reports wrong types with what was expected, what was found and where', () => {
    const found = problems(`app: shop
deploy_to: /srv/shop
keep_releases: many
environments:
  test:
    vars: [1, 2]
    host_timeout: soon
`);
    assert.equal(found.length, 3);
    assert.match(found[0]!, /^3:16 keep_releases: expected number; found "many"$/);
    assert.match(found[1]!, /^6:11 environments\.test\.vars: expected .+; found a list$/);
    assert.equal(found[2], '7:19 environments.test.host_timeout: expected a duration such as 30s, 5m or 1h; found "soon"');
  });

  it('reports missing required fields', () => {
    const found = problems('keep_releases: 3\n');
    assert.deepEqual(
      found.map((line) => line.replace(/^\d+:\d+ /, '')),
      ['app: required: expected string', 'deploy_to: required: expected string', 'environments: required: expected record'],
    );
  });

  it('reports every problem at once, in file order', () => {
    assert.deepEqual(
      problems(`app: Shop
deploy_to: srv/../x
keep_releases: 1
environments:
  a:
    vars:
      "1X": y
      OK: "a\\nb"
`),
      [
        '1:6 app: expected an application name of lowercase letters, digits and - (at most 32); found "Shop"',
        '2:12 deploy_to: expected an absolute path without ".." segments; found "srv/../x"',
        '3:16 keep_releases: expected at least 2 (the active and the previous release); found number 1',
        '7:7 environments.a.vars.1X: invalid key: expected a variable name of letters, digits and _ (not starting with a digit)',
        '8:11 environments.a.vars.OK: expected a single-line value (no newline or NUL); found "a\\nb"',
      ],
    );
  });

  it('rejects promote_from naming an environment that does not exist', () => {
    assert.deepEqual(
      problems(`app: shop
deploy_to: /srv/shop
environments:
  test: {}
  production:
    promote_from: staging
`),
      ['6:19 environments.production.promote_from: expected one of test, production; found "staging"'],
    );
  });

  it('rejects promote_from cycles, naming the cycle at each environment in it', () => {
    assert.deepEqual(
      problems(`app: shop
deploy_to: /srv/shop
environments:
  a:
    promote_from: b
  b:
    promote_from: a
  c:
    promote_from: a
`),
      [
        '5:19 environments.a.promote_from: promote_from forms a cycle: a -> b -> a',
        '7:19 environments.b.promote_from: promote_from forms a cycle: b -> a -> b',
      ],
    );
    assert.deepEqual(problems(`app: shop\ndeploy_to: /srv\nenvironments:\n  a:\n    promote_from: a\n`), [
      '5:19 environments.a.promote_from: an environment cannot promote from itself',
    ]);
  });

  it('reports YAML syntax errors with line:column', () => {
    assert.deepEqual(problems(`app: shop\ndeploy_to: /srv\nenvironments:\n\ta: {}\n`), ['4:1 : YAML syntax: Tabs are not allowed as indentation']);
    assert.deepEqual(problems(`app: shop\napp: other\ndeploy_to: /srv\nenvironments:\n  a: {}\n`), ['2:1 : YAML syntax: Map keys must be unique']);
    const error = rejected(`app: shop\ndeploy_to: /srv\nenvironments:\n\ta: {}\n`, 'x.yaml');
    assert.equal(error.message, 'x.yaml:4:1: YAML syntax: Tabs are not allowed as indentation');
  });

  it('rejects an empty file with the required fields', () => {
    assert.equal(rejected('').problems.length, 3);
  });
});

describe('promotionOrder', () => {
  it('puts every environment after the one it promotes from, whatever the file order', () => {
    assert.deepEqual(promotionOrder(parseConfig(STARTER_CONFIG)), ['development', 'test', 'production']);
    const reversed = parseConfig(`app: shop
deploy_to: /srv
environments:
  production:
    promote_from: test
  test:
    promote_from: development
  development: {}
  sandbox: {}
`);
    assert.deepEqual(promotionOrder(reversed), ['development', 'sandbox', 'test', 'production']);
  });
});

describe('secretsInEnvOf', () => {
  it("an environment's own secrets_in_env wins over the top-level one, which defaults to false", () => {
    const environments = 'environments:\n  a: {}\n  b: { secrets_in_env: true }\n  c: { secrets_in_env: false }\n';
    const plain = parseConfig(`app: shop\ndeploy_to: /srv/shop\n${environments}`);
    assert.deepEqual(['a', 'b', 'c'].map((env) => secretsInEnvOf(plain, env)), [false, true, false]);
    const everywhere = parseConfig(`app: shop\ndeploy_to: /srv/shop\nsecrets_in_env: true\n${environments}`);
    assert.deepEqual(['a', 'b', 'c'].map((env) => secretsInEnvOf(everywhere, env)), [true, true, false]);
  });
});
