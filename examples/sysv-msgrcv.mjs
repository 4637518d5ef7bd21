// The lecture's msgrcv program (alg.9-2): takes the messages of one type (or any, 0) from the
// queue with IPC_NOWAIT until there are none (ENOMSG), then says how many remain.
//   node examples/sysv-msgrcv.mjs /tmp/myshm [TYPE]
import { close, ftok, IPC_NOWAIT, IPC_STAT, msgctl, msgget, msgrcv } from 'postbox/sysv';

const path = process.argv[2] ?? '/tmp/myshm';
const type = Number(process.argv[3] ?? 0);
const msqid = await msgget(await ftok(path, 0x27), 0o666);
console.log(`Selected message type = ${type}`);
let received = 0;
for (;;) {
  try {
    const { mtype, mtext } = await msgrcv(msqid, 512, type, IPC_NOWAIT);
    console.log(`${mtype} ${mtext}`);
    received++;
  } catch (err) {
    if (err.code === 'ENOMSG') break;
    throw err;
  }
}
const ds = await msgctl(msqid, IPC_STAT);
console.log(`number of received messages = ${received}`);
console.log(`number of messages remaining = ${ds.msg_qnum}`);
await close();
