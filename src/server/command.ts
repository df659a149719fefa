/** `lockstep server`: JSON-lines logs on stdout, the first-start admin token on stderr, clean stop on SIGINT/SIGTERM. */
import { pino } from 'pino';
import { startServer } from './main.js';

/** Runs the server until SIGINT or SIGTERM. */
export async function runServerCommand(options: { dataDir: string; listen: string; database?: string | undefined }): Promise<void> {
  const logger = pino({ base: { service: 'lockstep-server' } });
  const server = await startServer({
    dataDir: options.dataDir,
    listen: options.listen,
    database: options.database,
    logger,
    onAdminToken: (token, file) => process.stderr.write(`lockstep: admin token (shown once; also in ${file}, mode 0600):\n${token}\n`),
  });
  process.stderr.write(`lockstep: server listening on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await server.close();
}
