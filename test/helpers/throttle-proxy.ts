/**
 * A TCP proxy on loopback that passes requests through and slows what the
 * server sends back to a fixed rate (shared by every connection): a slow
 * network, so that a transfer takes at least size / rate however fast the
 * machine is.
 */
import { createServer, connect, type Server, type Socket } from 'node:net';

/** A running proxy: agents talk to `url`. */
export interface ThrottleProxy {
  readonly url: string;
  close(): Promise<void>;
}

/** Starts a TCP proxy to `target` (http:// or https://host:port; TLS passes through) delivering at most `bytesPerSecond` downstream. */
export async function startThrottleProxy(target: string, bytesPerSecond: number): Promise<ThrottleProxy> {
  const { hostname, port, protocol } = new URL(target);
  /** When the bytes let through so far are due at the rate (idle time earns no burst). */
  let dueAt = performance.now();
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    const upstream = connect(Number(port), hostname);
    sockets.add(client).add(upstream);
    client.pipe(upstream);
    upstream.on('data', (chunk: Buffer) => {
      client.write(chunk);
      const now = performance.now();
      dueAt = Math.max(dueAt, now) + (chunk.length / bytesPerSecond) * 1000;
      // Ahead of the rate: hold the upstream until the budget catches up (TCP backpressure does the rest).
      const aheadMs = dueAt - now;
      if (aheadMs > 0) {
        upstream.pause();
        setTimeout(() => upstream.resume(), aheadMs).unref();
      }
    });
    upstream.on('end', () => client.end());
    const drop = (): void => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', drop).on('close', drop);
    upstream.on('error', drop).on('close', drop);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (address === null || typeof address === 'string') throw new Error('the proxy has no port');
  return {
    url: `${protocol}//127.0.0.1:${address.port}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
