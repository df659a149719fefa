/**
 * Diverged hosts: a host whose `current` (as its agent last reported it)
 * is not the release its environment runs, while no deployment is moving
 * the environment's hosts. Such a host serves something that was never
 * promoted there as a whole (a late switch, a hand edit of `current`, a
 * revert that failed), and `lockstep status` must say so.
 */

/** Whether a host has diverged from its environment; pure, from what the server knows. */
export function isDiverged(host: { readonly enrolled: boolean; readonly releaseId: string | null }, environmentCurrent: string | null, deploymentActive: boolean): boolean {
  // While a deployment runs, hosts differ by design until it ends.
  if (!host.enrolled || deploymentActive) return false;
  return host.releaseId !== environmentCurrent;
}
