/**
 * The routes that bring blobs in and take them out: upload sessions and
 * their batches, single blob uploads (deployers, and agents' drifted files)
 * under quotas, release creation (which closes a session) and gc.
 */
import type { Readable } from 'node:stream';
import { LockstepError } from '../../core/errors.js';
import type { ServerContext } from '../context.js';
import type { RouteHandlers } from '../http/route-binder.js';
import { actorOf, agentOf, userOf } from '../http/route-helpers.js';
import { collectGarbage } from './blob-gc.js';
import { createRelease } from './release-service.js';
import type { BlobIntake } from './upload-service.js';

function streamOf(body: Readable | undefined): Readable {
  if (!(body && typeof body.pipe === 'function')) throw new LockstepError('bad-input', 'send the blob as application/octet-stream');
  return body;
}

/** The handlers of the blob intake routes. */
export function blobRouteHandlers(context: ServerContext, intake: BlobIntake): RouteHandlers {
  return {
    uploadBlob: async ({ params, body }, request) => intake.receiveOne(userOf(request).name, params.hash, streamOf(body), Number(request.headers['content-length'])),
    openUpload: async ({ body }, request) => intake.openSession(userOf(request).name, body.blobs),
    uploadBatch: async ({ params, body }, request) => intake.receiveBatch(userOf(request).name, params.id, streamOf(body)),
    createRelease: async ({ body }, request) => intake.blobLock.run(() => createRelease(context, actorOf(request), body)),
    gc: async ({ body }, request) => collectGarbage(context, intake, actorOf(request), body.dryRun),
    agentBlobUpload: async ({ params, query, body }, request) => {
      const agent = agentOf(request, query.host);
      // The route binder caps the stream at the table's DRIFT_BLOB_MAX_BYTES (413); the host's quota may cap it sooner.
      return intake.receiveDrift(agent.host, params.hash, streamOf(body), Number(request.headers['content-length']));
    },
  };
}
