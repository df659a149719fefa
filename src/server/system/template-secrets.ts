/**
 * What managed-file templates learn about an environment's secrets: their
 * names at plan time (an unknown `{{ secrets.NAME }}` is refused before a
 * deployment), their values in a host's task. The secrets feature (issue 13)
 * provides them; until it is merged, an environment has no secrets, so every
 * `secrets.NAME` in a template is reported as unknown.
 */

/** The one interface templates use to reach secrets. */
export interface TemplateSecrets {
  /** The names of the secrets of `env`. */
  names(env: string): Promise<readonly string[]>;
  /** Name → value of the secrets of `env`, for the task of a host in it. */
  values(env: string): Promise<Record<string, string>>;
}

/** The stand-in until the secrets feature is wired here: no environment has secrets. */
export const templateSecrets: TemplateSecrets = {
  names: () => Promise.resolve([]),
  values: () => Promise.resolve({}),
};
