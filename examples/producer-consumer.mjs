// Producer/consumer over a bounded mailbox (capacity 3): the producer blocks whenever three
// items wait, the consumer blocks whenever none do. Two real processes; run with the kernel up:
//   node examples/producer-consumer.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';

const role = process.argv[2];
if (role === undefined) {
  const me = await connect();
  // A system-owned mailbox outlives whichever process ends first; we delete it at the end.
  const box = await me.createMailbox('buffer', { capacity: 3, system: true });
  const kids = ['producer', 'consumer'].map((r) => fork(fileURLToPath(import.meta.url), [r]));
  await Promise.all(kids.map((k) => new Promise((resolve) => k.once('exit', resolve))));
  await box.delete();
  await me.close();
} else if (role === 'producer') {
  const me = await connect({ name: 'producer' });
  const box = await me.openMailbox('buffer');
  for (let item = 1; item <= 10; item++) {
    await box.send(`item ${item}`); // blocks while the buffer is full
    console.log(`producer: put item ${item}`);
  }
  await box.send('done');
  await me.close();
} else {
  const me = await connect({ name: 'consumer' });
  const box = await me.openMailbox('buffer');
  for (;;) {
    const m = await box.receive(); // blocks while the buffer is empty
    if (m.body === 'done') break;
    console.log(`consumer: got ${m.body}`);
    await new Promise((r) => setTimeout(r, 20)); // a slow consumer: the producer waits for it
  }
  await me.close();
}
