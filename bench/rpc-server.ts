// The server process of bench/rpc.ts: serves `add` as the service named by its argument
// (default 'bench') and prints `ready`.
import { connect } from '../src/client/mod.js';
import { serve } from '../src/faces/rpc.js';

export const benchHandlers = {
  add(a: number, b: number): number {
    return a + b;
  },
};

const proc = await connect();
const server = await serve(proc, process.argv[2] ?? 'bench', benchHandlers, { concurrency: 64 });
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void server
    .close()
    .then(() => proc.close())
    .then(() => process.exit(0));
});
