// A FIFO (named pipe) between two unrelated processes: they share only its name. The reader sees
// end of file when the last writer closes.   node examples/fifo.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';
import { mkfifo, openFifo, unlinkFifo } from 'postbox/fifo';

const [role, name = `temp-${process.pid}`] = process.argv.slice(2);
const me = await connect();
if (role === undefined) {
  // A name of its own, so a FIFO (or mailbox) called temp, as in docs/cli.md, is not in its way.
  await mkfifo(me, name);
  const kids = ['reader', 'writer'].map((r) => fork(fileURLToPath(import.meta.url), [r, name]));
  await Promise.all(kids.map((k) => new Promise((resolve) => k.once('exit', resolve))));
  await unlinkFifo(me, name);
} else if (role === 'writer') {
  const w = await openFifo(me, name, 'w');
  for (const line of ['the first line', 'the second line', 'the last line']) w.write(`${line}\n`);
  await new Promise((resolve) => w.end(resolve));
  console.log('writer: wrote 3 lines and closed');
} else {
  const r = await openFifo(me, name, 'r');
  let text = '';
  for await (const chunk of r) text += chunk;
  console.log(
    `reader: end of file after ${text.split('\n').filter(Boolean).length} lines:\n${text.trimEnd()}`,
  );
}
await me.close();
