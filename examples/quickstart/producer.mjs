// The producer of the README: sends 100 jobs, waiting whenever 10 are queued.
import { connect } from 'postbox';

const me = await connect({ name: 'producer' });
const jobs = await me.openMailbox('jobs', { create: { capacity: 10, system: true } });
for (let i = 0; i < 100; i++) await jobs.send({ task: 'resize', id: i });
const { receiver } = await jobs.send('last one', { receipt: true });
console.log('taken by process', receiver);
await me.close();
