// An RPC client. It starts examples/rpc-server.mjs itself, so one command runs both; its calls
// wait for the server ({ waitForServer: true }) instead of failing while it starts.
//   node examples/rpc-client.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';
import { RemoteError, stub } from 'postbox/rpc';

const server = fork(fileURLToPath(new URL('./rpc-server.mjs', import.meta.url)));
const me = await connect();
const calc = stub(me, 'calculator', { waitForServer: true });
try {
  console.log(`add(2, 3) = ${await calc.add(2, 3)}`);
  try {
    await calc.divide(1, 0);
  } catch (err) {
    if (!(err instanceof RemoteError)) throw err;
    console.log(`divide(1, 0) failed remotely: ${err.remoteName}: ${err.remoteMessage}`);
  }
  const counted = [];
  for await (const n of calc.countdown(3)) counted.push(n);
  console.log(`countdown: ${counted.join(' ')} liftoff`);
  try {
    await calc.$with({ timeout: 100 }).slow(10_000);
  } catch (err) {
    console.log(`slow() timed out: ${err.code}`);
  }
} finally {
  await me.close();
  server.kill('SIGTERM');
}
