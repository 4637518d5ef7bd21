// P1 sends to mailbox A; P2 and P3 both receive from it. A is round-robin: the system picks the
// receiver in turn, and the sender is told who received each message (the lecture's third
// answer to "who gets the message?").   node examples/shared-mailbox.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';

const role = process.argv[2];
if (role === undefined) {
  const me = await connect();
  const a = await me.createMailbox('A', { policy: 'round-robin', system: true });
  const receivers = ['P2', 'P3'].map((r) => fork(fileURLToPath(import.meta.url), [r]));
  // Wait until both receivers are waiting, so the turns are theirs to take.
  while ((await a.stat()).waitingReceivers.length < 2) await new Promise((r) => setTimeout(r, 10));
  const p1 = fork(fileURLToPath(import.meta.url), ['P1']);
  await new Promise((resolve) => p1.once('exit', resolve));
  await a.delete(); // the receivers' waits end with EIDRM, and they exit
  await Promise.all(receivers.map((k) => new Promise((resolve) => k.once('exit', resolve))));
  await me.close();
} else if (role === 'P1') {
  const me = await connect({ name: 'P1' });
  const a = await me.openMailbox('A');
  const names = Object.fromEntries((await me.processes()).map((p) => [p.id, p.name]));
  for (let i = 1; i <= 6; i++) {
    // Round robin is among the receivers waiting: the last taker may still be on its way back
    // to its receive() (the take goes to the kernel first), so let both be waiting again.
    while ((await a.stat()).waitingReceivers.length < 2) await new Promise((r) => setTimeout(r, 5));
    const r = await a.send(`message ${i}`, { receipt: true });
    console.log(`P1: message ${i} was received by ${names[r.receiver]}`);
  }
  await me.close();
} else {
  const me = await connect({ name: role });
  const a = await me.openMailbox('A');
  try {
    for (;;) {
      const m = await a.receive();
      console.log(`${role}: got ${m.body}`);
    }
  } catch (err) {
    if (err.code !== 'EIDRM') throw err;
  }
  await me.close();
}
