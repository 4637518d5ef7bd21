/**
 * A TCP proxy between clients and a kernel's `--listen` port that can make a link go dark: it
 * keeps both connections open and reads what comes, but forwards nothing in the chosen
 * direction, as a network that drops packets without a FIN or RST does (a NAT or firewall that
 * forgot the connection, a cable pulled). Real sockets throughout.
 */
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';

/** Which way bytes stop: client to kernel, kernel to client, or both. */
export type Direction = 'toKernel' | 'toClient' | 'both';

interface Link {
  client: Socket;
  kernel: Socket;
  toKernel: boolean;
  toClient: boolean;
}

export class FaultProxy {
  private readonly links: Link[] = [];
  private readonly server: Server;
  /** `tcp://127.0.0.1:PORT` to give clients instead of the kernel's address. */
  url = '';

  private constructor(kernelPort: number) {
    this.server = createServer((client) => {
      const kernel = netConnect({ host: '127.0.0.1', port: kernelPort });
      const link: Link = { client, kernel, toKernel: true, toClient: true };
      this.links.push(link);
      client.on('error', () => {});
      kernel.on('error', () => {});
      // What arrives while a direction is dark is read and dropped: the sender's TCP sees its
      // bytes acknowledged, as it would by a middlebox that forgot the connection.
      client.on('data', (b) => link.toKernel && kernel.write(b));
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
    }
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
