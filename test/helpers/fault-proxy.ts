/**
 * A TCP proxy between clients and a kernel's `--listen` port that can make a link go dark: it
 * keeps both connections open and reads what comes, but forwards nothing in the chosen
 * direction, as a network that drops packets without a FIN or RST does (a NAT or firewall that
 * forgot the connection, a cable pulled). Real sockets throughout.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { FrameDecoder } from '../../src/protocol/decoder.js';
import { Off, Op } from '../../src/protocol/frame.js';

/** Past any frame a client writes: the kernel's own largest is far below. */
const MAX_FRAME_BYTES = 2 ** 32 - 1;

/** Which way bytes stop: client to kernel, kernel to client, or both. */
export type Direction = 'toKernel' | 'toClient' | 'both';

interface Link {
  client: Socket;
  kernel: Socket;
  toKernel: boolean;
  toClient: boolean;
  /** The client's frames, followed across reads: the PINGs it wrote once the link went dark. */
  fromClient: PingCounter;
}

/**
 * Counts the PING frames in one direction of a link, split into frames by the decoder the kernel
 * and the client use: how many heartbeats a client gave a dark link before it gave up on it.
 */
class PingCounter {
  /** PINGs seen while `counting`. */
  pings = 0;
  counting = false;
  private readonly decoder = new FrameDecoder(MAX_FRAME_BYTES, (buf, start) => {
    if (this.counting && buf[start + Off.OPCODE] === Op.PING) this.pings++;
  });

  feed(b: Buffer): void {
    this.decoder.push(b);
  }
}

export class FaultProxy {
  private readonly links: Link[] = [];
  private readonly server: Server;
  /** `tcp://127.0.0.1:PORT` to give clients instead of the kernel's address. */
  url = '';

  private constructor(kernelPort: number) {
    this.server = createServer((client) => {
      const kernel = netConnect({ host: '127.0.0.1', port: kernelPort });
      const link: Link = { client, kernel, toKernel: true, toClient: true, fromClient: new PingCounter() };
      this.links.push(link);
      client.on('error', () => {});
      kernel.on('error', () => {});
      // What arrives while a direction is dark is read and dropped: the sender's TCP sees its
      // bytes acknowledged, as it would by a middlebox that forgot the connection.
      client.on('data', (b) => {
        link.fromClient.feed(b);
        if (link.toKernel) kernel.write(b);
      });
      kernel.on('data', (b) => link.toClient && client.write(b));
      client.on('end', () => link.toKernel && kernel.end());
      kernel.on('end', () => link.toClient && client.end());
      client.on('close', () => link.toKernel && kernel.destroy());
      kernel.on('close', () => link.toClient && client.destroy());
    });
  }

  static async start(kernelPort: number): Promise<FaultProxy> {
    const proxy = new FaultProxy(kernelPort);
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    const address = proxy.server.address();
    if (address === null || typeof address === 'string') throw new Error('the proxy has no TCP address');
    proxy.url = `tcp://127.0.0.1:${address.port}`;
    return proxy;
  }

  /** Stops forwarding in `direction` on every link, without closing anything. */
  dark(direction: Direction): void {
    for (const link of this.links) {
      if (direction !== 'toClient') link.toKernel = false;
      if (direction !== 'toKernel') link.toClient = false;
      link.fromClient.counting = true;
    }
  }

  /** The PINGs the clients wrote since their links went dark, all links together. */
  get pingsSinceDark(): number {
    let n = 0;
    for (const link of this.links) n += link.fromClient.pings;
    return n;
  }

  /** Destroys every link and stops listening. */
  async close(): Promise<void> {
    for (const link of this.links) {
      link.client.destroy();
      link.kernel.destroy();
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
