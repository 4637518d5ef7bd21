// Rendezvous: a mailbox of capacity 0 buffers nothing, so send() returns only when the receiver
// has taken the message — both processes meet.   node examples/rendezvous.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';

const role = process.argv[2];
if (role === undefined) {
  const me = await connect();
  const box = await me.createMailbox('meeting-point', { capacity: 0, system: true });
  const kids = ['sender', 'receiver'].map((r) => fork(fileURLToPath(import.meta.url), [r]));
  await Promise.all(kids.map((k) => new Promise((resolve) => k.once('exit', resolve))));
  await box.delete();
  await me.close();
} else if (role === 'sender') {
  const me = await connect({ name: 'sender' });
  const box = await me.openMailbox('meeting-point');
  const t0 = Date.now();
  console.log('sender: sending (no buffer: I wait for the receiver)');
  const r = await box.send('let us meet');
  console.log(`sender: send returned after ${Date.now() - t0} ms, ${r.outcome} by process ${r.receiver}`);
  await me.close();
} else {
  const me = await connect({ name: 'receiver' });
  const box = await me.openMailbox('meeting-point');
  // Arrive late on purpose: only once the sender is seen blocked, waiting for us.
  while ((await box.stat()).waitingSenders.length === 0) await new Promise((r) => setTimeout(r, 10));
  console.log('receiver: the sender is blocked; now I receive');
  const m = await box.receive();
  console.log(`receiver: took '${m.body}'`);
  await me.close();
}
