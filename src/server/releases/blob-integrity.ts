/** What the server does when a stored blob turns out corrupt while it is served: a log line and an audit event. */
import type { CorruptBlob } from '../../content/blob-store.js';
import type { ServerContext } from '../context.js';

/**
 * Logs and audits a corrupt stored blob (found while serving it to `host`).
 * Runs in the background of the failed download: the quarantine already
 * happened, so the next request answers with the corruption either way.
 */
export function reportCorruptBlob(context: ServerContext, corrupt: CorruptBlob, host: string): void {
  const fields = { blob: corrupt.hash, actual: corrupt.actual, size: corrupt.size, quarantinedAt: corrupt.quarantinedAt ?? null, host };
  if (corrupt.quarantineError !== undefined) {
    context.logger.error({ ...fields, err: corrupt.quarantineError }, 'stored blob is corrupt and could not be moved to quarantine; re-upload the release');
  } else {
    context.logger.error(fields, 'stored blob is corrupt; moved to quarantine until the release is uploaded again');
  }
  const at = context.now().toISOString();
  context.store
    .transaction((repo) => repo.appendAudit({ at, actor: 'lockstep', action: 'blob.corrupt', target: `blob:${corrupt.hash}`, details: fields }))
    .catch((error: unknown) => context.logger.error({ err: error, blob: corrupt.hash }, 'could not audit a corrupt blob'));
}
