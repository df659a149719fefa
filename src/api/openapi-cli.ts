/** Prints the OpenAPI document (`npm run openapi` writes it to docs/openapi.json). */
import { openApiText } from './openapi.js';

process.stdout.write(openApiText());
