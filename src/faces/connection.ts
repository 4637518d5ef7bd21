/**
 * Socket-style connections over mailboxes: a server listens on a named port, clients dial it,
 * and each connection is two mailboxes, one per direction, each owned by the process that
 * receives from it. Stream style (reliable, ordered, backpressure) or datagram style (bounded,
 * never blocks the sender, drops counted). A connection is also a Node Duplex stream.
 * docs/connections.md tells the whole story.
 *
 * @example
 * ```ts
 * import { connect } from 'postbox';
 * import { dial, listen } from 'postbox/connection';
 * import { pipeline } from 'node:stream';
 *
 * // server
 * const port = await listen(await connect(), 'echo');
 * for await (const conn of port) pipeline(conn, conn, () => {});
 *
 * // client, in another process, maybe on another machine
 * const conn = await dial(await connect(), 'echo');
 * await conn.send('hello');
 * console.log((await conn.receive())?.text()); // hello
 * await conn.close();
 * ```
 */
export {
  type AcceptOptions,
  type DialOptions,
  dial,
  type ListenOptions,
  listen,
  Port,
  type WindowOptions,
} from './connection/handshake.js';
export {
  Connection,
  type ConnectionReceiveOptions,
  type ConnectionSendOptions,
  type DropCounts,
  type PeerInfo,
} from './connection/socket.js';
export { type ConnectionStyle, PORT_PREFIX, RESERVED_TYPE } from './connection/wire.js';
