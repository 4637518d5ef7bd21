// cat foo.c | grep factorial — two ordinary programs joined by a Postbox pipe: cat's output goes
// into the pipe, grep's input comes out of it.   node examples/cat-grep.mjs [FILE] [WORD]
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';
import { spawn } from 'postbox/pipe';

const file = process.argv[2] ?? fileURLToPath(new URL('./foo.c', import.meta.url));
const word = process.argv[3] ?? 'factorial';
const me = await connect();
const cat = await spawn(me, 'cat', [file], 'r'); // cat's stdout → the pipe we read
const grep = await spawn(me, 'grep', [word], 'w'); // the pipe we write → grep's stdin
cat.reader.pipe(grep.writer);
const [c, g] = await Promise.all([cat.wait(), grep.wait()]);
console.error(`cat exited ${c.code}, grep exited ${g.code}`);
await me.close();
