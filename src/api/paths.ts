/** The API's path prefix; its own module so that light clients need not load the schemas. */
export const API_PREFIX = '/api/v1';
