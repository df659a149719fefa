import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { compileGlobs } from '../../src/fim/glob.js';

describe('compileGlobs', () => {
  it('matches basenames at any depth when a pattern has no slash', () => {
    const match = compileGlobs(['*.log', 'cache']);
    assert.ok(match('app.log'));
    assert.ok(match('var/log/app.log'));
    assert.ok(match('var/cache'));
    assert.ok(match('var/cache/item'), 'what lies under a matching directory matches too');
    assert.ok(!match('app.logs'));
    assert.ok(!match('var/cached'));
  });

  it('anchors patterns with a slash at the root; ** spans segments, * and ? do not', () => {
    const match = compileGlobs(['var/**/tmp', 'etc/*.conf', 'a?c/x', 'data/**']);
    assert.ok(match('var/tmp'));
    assert.ok(match('var/a/b/tmp'));
    assert.ok(match('var/a/tmp/file'));
    assert.ok(match('etc/app.conf'));
    assert.ok(!match('etc/sub/app.conf'));
    assert.ok(!match('x/etc/app.conf'));
    assert.ok(match('abc/x'));
    assert.ok(!match('a/c/x'));
    assert.ok(match('data'));
    assert.ok(match('data/deep/file'));
    assert.ok(!match('database'));
  });

  it('supports classes and escapes regular expression characters', () => {
    const match = compileGlobs(['[ab]*.txt', '[!x]y', 'a+b.(c)']);
    assert.ok(match('alpha.txt'));
    assert.ok(!match('gamma.txt'));
    assert.ok(match('zy'));
    assert.ok(!match('xy'));
    assert.ok(match('a+b.(c)'));
    assert.ok(!match('aab.(c)'));
    assert.ok(!compileGlobs([])('anything'));
  });
});

describe('compileGlobs: braces and dot files', () => {
  it('matches brace alternatives, basename and anchored (*.{bak,tmp} used to match nothing)', () => {
    const match = compileGlobs(['*.{bak,tmp}', 'etc/{nginx,apache2}/**']);
    assert.ok(match('index.html.bak'));
    assert.ok(match('var/spool/x.tmp'));
    assert.ok(!match('x.bak2'));
    assert.ok(!match('x.{bak,tmp}'));
    assert.ok(match('etc/nginx'));
    assert.ok(match('etc/apache2/sites/default'));
    assert.ok(!match('etc/lighttpd/x'));
  });

  it('matches dot files like any other', () => {
    const match = compileGlobs(['*.swp', 'home/*/.ssh/**']);
    assert.ok(match('etc/.config.swp'));
    assert.ok(match('home/alice/.ssh/authorized_keys'));
  });
});
