// An RPC server: serves 'calculator' until stopped (Ctrl-C or SIGTERM). Run several at once and the
// calls are shared round robin.   node examples/rpc-server.mjs
import { connect } from 'postbox';
import { serve } from 'postbox/rpc';

const handlers = {
  add(a, b) {
    return a + b;
  },
  divide(a, b) {
    if (b === 0) throw new RangeError('division by zero');
    return a / b;
  },
  // A handler returning an async iterable streams: each item waits for room in the caller's
  // small mailbox, so a slow caller slows this loop down.
  async *countdown(from, ctx) {
    for (let i = from; i > 0 && !ctx.signal.aborted; i--) {
      yield i;
      await new Promise((r) => setTimeout(r, 20));
    }
  },
  // Told when the caller gives up: ctx.signal aborts.
  slow(ms, ctx) {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => resolve('done'), ms);
      ctx.signal.addEventListener('abort', () => {
        clearTimeout(t);
        reject(ctx.signal.reason);
      });
    });
  },
};

const me = await connect();
const server = await serve(me, 'calculator', handlers, { concurrency: 16 });
console.log(`server: serving 'calculator' as process ${me.id}`);
for (const signal of ['SIGINT', 'SIGTERM']) {
  process.once(signal, async () => {
    await server.close({ abort: true });
    await me.close();
    console.log('server: stopped');
  });
}
