/**
 * What a secret may be called: the rule of a variable name, so one name serves as a file name in
 * shared/secrets/ and as a lockstep.env key alike. Shared by the CLI (no schema library), the server and the agent.
 */

/** Letters, digits and _, not starting with a digit. */
export const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** Why `name` cannot name a secret (one line, with an example), or undefined when it can. */
export function secretNameProblem(name: string): string | undefined {
  return SECRET_NAME.test(name) ? undefined : `secret name "${name}" is not allowed: use letters, digits and _, not starting with a digit (e.g. DB_PASSWORD)`;
}
