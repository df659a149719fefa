/** The secret routes: admins set and remove an environment's secrets, viewers list their names. */
import type { ServerContext } from '../context.js';
import type { RouteHandlers } from '../http/route-binder.js';
import { userOf } from '../http/route-helpers.js';
import { listSecrets, removeSecret, setSecret } from './secret-service.js';

/** The handlers of the secret routes. */
export function secretRouteHandlers(context: ServerContext): RouteHandlers {
  return {
    listSecrets: async ({ params }) => listSecrets(context, params.env),
    setSecret: async ({ params, body }, request) => setSecret(context, userOf(request).name, params.env, params.name, body.value),
    removeSecret: async ({ params }, request) => removeSecret(context, userOf(request).name, params.env, params.name),
  };
}
