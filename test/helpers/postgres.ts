/**
 * A real, throwaway PostgreSQL server for tests: initdb into a temp dir,
 * started with pg_ctl on a free loopback port (its unix socket inside the
 * temp dir), trust authentication, fsync off. As root (CI containers) the
 * server programs run as the `postgres` user, since initdb refuses root.
 */
import { execFile, spawnSync } from 'node:child_process';
import { chown, mkdir, mkdtemp, readFile, readdir, realpath, stat } from 'node:fs/promises';
import { existsSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';

const run = promisify(execFile);

/** A running server; `url` points at a database created for the caller. */
export interface PostgresServer {
  readonly url: string;
  /** Creates another empty database on the same server and returns its URL. */
  createDatabase(name?: string): Promise<string>;
  /** Stops the server immediately and removes its directory. Safe to call twice. */
  stop(): Promise<void>;
}

const USER = 'lockstep';
let databaseCounter = 0;

/** Starts a PostgreSQL server in a new temp dir; throws with the server log if it cannot. */
export async function startPostgres(): Promise<PostgresServer> {
  const bin = await postgresBinDir();
  const asRoot = process.getuid?.() === 0;
  const dir = await mkdtemp(join(tmpdir(), 'lockstep-pg-'));
  const data = join(dir, 'data');
  const sockets = join(dir, 'sock');
  const log = join(dir, 'server.log');
  await mkdir(sockets);
  if (asRoot) {
    const { uid, gid } = await postgresUser();
    await chown(dir, uid, gid);
    await chown(sockets, uid, gid);
  }
  // Runs a server program, as the postgres user when we are root.
  const exec = (program: string, args: readonly string[]) => {
    const path = join(bin, program);
    const [file, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', path, ...args]] : [path, [...args]];
    return run(file, argv, { cwd: dir, timeout: 60_000 });
  };

  let stopped = false;
  const stopNow = () => {
    if (stopped) return;
    stopped = true;
    const path = join(bin, 'pg_ctl');
    const args = ['-D', data, '-m', 'immediate', '-w', 'stop'];
    // Synchronous so it also works from a process 'exit' handler.
    if (existsSync(join(data, 'postmaster.pid'))) {
      if (asRoot) spawnSync('runuser', ['-u', 'postgres', '--', path, ...args], { stdio: 'ignore', cwd: dir });
      else spawnSync(path, args, { stdio: 'ignore', cwd: dir });
    }
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', stopNow);

  try {
    await exec('initdb', ['-D', data, '-U', USER, '--auth=trust', '--encoding=UTF8', '--no-locale', '--no-sync']);
    let port = 0;
    // A port found free can be taken before the server binds it; try a few.
    for (let attempt = 1; ; attempt++) {
      port = await freePort();
      const options = `-c listen_addresses=127.0.0.1 -k ${sockets} -p ${port} -c fsync=off -c synchronous_commit=off -c full_page_writes=off`;
      try {
        await exec('pg_ctl', ['-D', data, '-l', log, '-w', '-t', '60', '-o', options, 'start']);
        break;
      } catch (error) {
        if (attempt >= 3) throw error;
      }
    }
    const base = `postgres://${USER}@127.0.0.1:${port}`;
    const createDatabase = async (name = `test_${process.pid}_${++databaseCounter}`) => {
      const client = new pg.Client({ connectionString: `${base}/postgres` });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      } finally {
        await client.end();
      }
      return `${base}/${encodeURIComponent(name)}`;
    };
    const url = await createDatabase('lockstep');
    return {
      url,
      createDatabase,
      stop: async () => {
        process.removeListener('exit', stopNow);
        stopNow();
      },
    };
  } catch (error) {
    const serverLog = await readFile(log, 'utf8').catch(() => '(no server log)');
    process.removeListener('exit', stopNow);
    stopNow();
    throw new Error(`could not start PostgreSQL from ${bin}; server log:\n${serverLog}`, { cause: error });
  }
}

/** The directory holding initdb, pg_ctl and postgres: $LOCKSTEP_PG_BIN, PATH, then /usr/lib/postgresql/<newest>/bin. */
async function postgresBinDir(): Promise<string> {
  const candidates: string[] = [];
  if (process.env.LOCKSTEP_PG_BIN) candidates.push(process.env.LOCKSTEP_PG_BIN);
  candidates.push(...(process.env.PATH ?? '').split(delimiter).filter(Boolean));
  const versions = await readdir('/usr/lib/postgresql').catch(() => [] as string[]);
  versions.sort((a, b) => Number(b) - Number(a));
  candidates.push(...versions.map((version) => join('/usr/lib/postgresql', version, 'bin')));
  for (const dir of candidates) {
    const initdb = join(dir, 'initdb');
    if (await isFile(initdb)) {
      // PATH often holds symlinks (/usr/local/bin/initdb); use the real directory,
      // where pg_ctl and postgres live too.
      const real = dirname(await realpath(initdb));
      if ((await isFile(join(real, 'pg_ctl'))) && (await isFile(join(real, 'postgres')))) return real;
    }
  }
  throw new Error('PostgreSQL server binaries (initdb, pg_ctl, postgres) not found; install the Debian package postgresql');
}

async function isFile(path: string): Promise<boolean> {
  return stat(path).then((s) => s.isFile(), () => false);
}

async function postgresUser(): Promise<{ uid: number; gid: number }> {
  const { stdout: uid } = await run('id', ['-u', 'postgres']);
  const { stdout: gid } = await run('id', ['-g', 'postgres']);
  return { uid: Number(uid.trim()), gid: Number(gid.trim()) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}
