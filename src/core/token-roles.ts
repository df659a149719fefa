/** The roles a bearer token can have: people's and scripts' roles, and the agents' own. */

/** The roles of tokens people and scripts use. */
export const USER_ROLES = ['viewer', 'deployer', 'approver', 'admin'] as const;
/** A person's or script's role (see USER_ROLES). */
export type UserRole = (typeof USER_ROLES)[number];

/** Every token role: user roles, an enrolled agent's, and the one-time enrollment token's. */
export const TOKEN_ROLES = [...USER_ROLES, 'agent', 'enroll'] as const;
/** A token's role (see TOKEN_ROLES). */
export type TokenRole = (typeof TOKEN_ROLES)[number];
