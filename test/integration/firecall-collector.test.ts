/**
 * The fire-call collector reads the sshd log and the session transcripts: a
 * log that is not there yet is nothing to collect, but one that is there and
 * cannot be read is an error the agent reports (never "no logins").
 */
import assert from 'node:assert/strict';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { FirecallCollector } from '../../src/agent/firecall/firecall-collector.js';
import { withTempDir } from '../helpers/tmp.js';

describe('FirecallCollector', () => {
  it('collects nothing from an sshd log that does not exist, and throws for one that cannot be read', () =>
    withTempDir(async (dir) => {
      const transcripts = join(dir, 'transcripts');
      const state = join(dir, 'state');
      await mkdir(transcripts);
      await mkdir(state);
      const log = join(dir, 'auth.log');

      const absent = new FirecallCollector(log, transcripts, state);
      await absent.open();
      assert.deepEqual((await absent.collect()).records, []);

      // A symlink loop stands for any read error (EACCES cannot be made as root).
      await symlink('auth.log', log);
      await assert.rejects(absent.collect(), { code: 'ELOOP' });
      await assert.rejects(new FirecallCollector(log, transcripts, state).open(), { code: 'ELOOP' });
    }));

  it('collects the lines of the log that name a fire call', () =>
    withTempDir(async (dir) => {
      const transcripts = join(dir, 'transcripts');
      await mkdir(transcripts);
      const log = join(dir, 'auth.log');
      await writeFile(log, '');
      const collector = new FirecallCollector(log, transcripts, dir);
      await collector.open();
      await writeFile(log, 'sshd[1]: Accepted publickey for ops: ID firecall-7-ops (serial 3)\nsshd[2]: unrelated\n');
      const { records } = await collector.collect();
      assert.deepEqual(
        records.map((record) => [record.firecallId, record.kind]),
        [[7, 'sshd']],
      );
    }));
});
