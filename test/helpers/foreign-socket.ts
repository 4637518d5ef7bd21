import { once } from 'node:events';
import { chmodSync, chownSync } from 'node:fs';
import { createServer, type Server } from 'node:net';

/**
 * `setpriv` arguments that run a command as root without the right to override file modes, so
 * that a socket of another user's (below) is refused to it with EACCES, as to that user's peers.
 */
export const WITHOUT_MODE_OVERRIDE = ['--bounding-set', '-dac_override,-dac_read_search', '--'];

/** Listens at `path` on a socket given to another user (uid 65534), mode 0700. Needs root. */
export async function listenAsAnotherUser(path: string): Promise<Server> {
  const server = createServer();
  server.listen(path);
  await once(server, 'listening');
  chownSync(path, 65534, 65534);
  chmodSync(path, 0o700);
  return server;
}
