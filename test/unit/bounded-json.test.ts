import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonBoundsViolation } from '../../src/server/http/bounded-json.js';

const bounds = { maxDepth: 4, maxStringChars: 10 };

describe('jsonBoundsViolation', () => {
  it('accepts JSON within the bounds', () => {
    assert.equal(jsonBoundsViolation('{"a":[[{"b":"0123456789"}]]}', bounds), undefined);
    assert.equal(jsonBoundsViolation('[]', bounds), undefined);
    assert.equal(jsonBoundsViolation('"x"', bounds), undefined);
  });

  it('refuses nesting one level past the bound, naming it', () => {
    const violation = jsonBoundsViolation('[[[[[1]]]]]', bounds);
    assert.equal(violation?.kind, 'too-deep');
    assert.match(violation.message, /deeper than 4 levels/);
    assert.equal(jsonBoundsViolation('[[[[1]]],[[[1]]]]', bounds), undefined, 'siblings do not add up');
  });

  it('does not count brackets inside strings, or quotes that are escaped', () => {
    assert.equal(jsonBoundsViolation('["[[[[[[", "{{{{{{"]', bounds), undefined);
    assert.equal(jsonBoundsViolation('["\\"[[[[[["]', bounds), undefined);
    assert.equal(jsonBoundsViolation('["a\\\\", [[[1]]]]', bounds), undefined, 'an escaped backslash ends before the quote');
    assert.equal(jsonBoundsViolation('["a\\\\", [[[[1]]]]]', bounds)?.kind, 'too-deep');
  });

  it('refuses a string longer than the bound, counting an escape as one character', () => {
    const violation = jsonBoundsViolation('{"a":"01234567890"}', bounds);
    assert.equal(violation?.kind, 'string-too-long');
    assert.equal(violation.message, 'a string in the request body is 11 characters long; this route takes at most 10');
    assert.equal(jsonBoundsViolation('["\\n\\n\\n\\n\\n\\n\\n\\n\\n\\n"]', bounds), undefined, 'ten escaped newlines are ten characters');
    assert.equal(jsonBoundsViolation('["\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"]', bounds)?.kind, 'string-too-long');
    assert.equal(jsonBoundsViolation('{"0123456789ab":1}', bounds)?.kind, 'string-too-long', 'keys are strings too');
  });

  it('leaves malformed JSON to the parser', () => {
    assert.equal(jsonBoundsViolation('["open', bounds), undefined);
    assert.equal(jsonBoundsViolation(']]]', bounds), undefined);
  });
});
