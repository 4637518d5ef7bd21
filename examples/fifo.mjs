// A FIFO (named pipe) between two unrelated processes: they share only its name. The reader sees
// end of file when the last writer closes.   node examples/fifo.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';
import { mkfifo, openFifo, unlinkFifo } from 'postbox/fifo';

const role = process.argv[2];
const me = await connect();
if (role === undefined) {
  await mkfifo(me, 'temp');
  const kids = ['reader', 'writer'].map((r) => fork(fileURLToPath(import.meta.url), [r]));
  await Promise.all(kids.map((k) => new Promise((resolve) => k.once('exit', resolve))));
  await unlinkFifo(me, 'temp');
} else if (role === 'writer') {
  const w = await openFifo(me, 'temp', 'w');
  for (const line of ['the first line', 'the second line', 'the last line']) w.write(`${line}\n`);
  await new Promise((resolve) => w.end(resolve));
  console.log('writer: wrote 3 lines and closed');
} else {
  const r = await openFifo(me, 'temp', 'r');
  let text = '';
  for await (const chunk of r) text += chunk;
  console.log(
    `reader: end of file after ${text.split('\n').filter(Boolean).length} lines:\n${text.trimEnd()}`,
  );
}
await me.close();
