// The consumer of the README: takes jobs as they come (run the producer in another terminal).
import { connect } from 'postbox';

const me = await connect({ name: 'consumer' });
const jobs = await me.openMailbox('jobs', { create: { capacity: 10, system: true } });
const limit = Number(process.argv[2] ?? Number.POSITIVE_INFINITY);
let n = 0;
for await (const m of jobs) {
  console.log(`job from process ${m.sender}:`, m.body);
  if (++n >= limit) break;
}
await me.close();
