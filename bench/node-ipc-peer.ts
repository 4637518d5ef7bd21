// Node's own child_process IPC channel (fork(), process.send, 'message' events; the default JSON
// serialization, string bodies): this process forks a child and the two pass messages.
//
//   node node-ipc-peer.js oneway <messages> <size>       the child sends, this process counts
//   node node-ipc-peer.js rtt <rounds> <size> <warmup>   this process asks, the child echoes

import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Counter, fail, goSignal, intArg, peerStart, roundTrips, say } from './peer-common.js';

const SELF = fileURLToPath(import.meta.url);

function child(role: 'sender' | 'echo'): void {
  process.on('disconnect', () => process.exit(0));
  if (role === 'echo') {
    process.on('message', (m) => process.send!(m));
    return;
  }
  process.once('message', (m) => {
    const { messages, size } = m as { messages: number; size: number };
    const body = 'a'.repeat(size);
    // At most 4096 unwritten, awaiting the write callback of every 256th.
    let acked = 0;
    let i = 0;
    const pump = (): void => {
      while (i < messages) {
        if (i - acked >= 4096) return;
        i++;
        if (i % 256 === 0 || i === messages) {
          const k = i;
          process.send!(body, undefined, {}, () => {
            acked = k;
            pump();
          });
        } else process.send!(body);
      }
    };
    pump();
  });
}

async function parent(role: 'oneway' | 'rtt', count: number, size: number, warmup: number): Promise<void> {
  const c = fork(SELF, [role === 'oneway' ? 'child-sender' : 'child-echo'], { stdio: 'inherit' });
  c.on('error', fail);
  c.on('exit', (code) => {
    if (code !== 0 && code !== null) fail(new Error(`child exited with code ${code}`));
  });
  await new Promise<void>((r) => c.once('spawn', () => r()));
  say('ready');
  await goSignal();
  if (role === 'oneway') {
    const counter = new Counter(count, 0, () => {
      c.kill();
      say(counter.result(), true);
    });
    c.on('message', () => counter.hit());
    c.send({ messages: count, size });
    return;
  }
  const body = 'a'.repeat(size);
  const lat = new Float64Array(count);
  let i = 0;
  let t = 0;
  let start = 0;
  const ask = (): void => {
    if (i === warmup) start = performance.now();
    t = performance.now();
    c.send(body);
  };
  c.on('message', () => {
    if (i >= warmup) lat[i - warmup] = (performance.now() - t) * 1000;
    if (++i >= warmup + count) {
      c.kill();
      say(roundTrips(lat, performance.now() - start), true);
      return;
    }
    ask();
  });
  ask();
}

const [role, a, b, c] = process.argv.slice(2);
if (role === 'child-sender') child('sender');
else if (role === 'child-echo') child('echo');
else {
  peerStart();
  if (role === 'oneway') parent('oneway', intArg(a, 'messages', 1), intArg(b, 'size'), 0).catch(fail);
  else if (role === 'rtt')
    parent('rtt', intArg(a, 'rounds', 1), intArg(b, 'size'), intArg(c, 'warmup')).catch(fail);
  else fail(new Error(`unknown role ${role}`));
}
