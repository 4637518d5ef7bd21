// The lecture's msgsnd program (alg.9-1): reads "TYPE TEXT" lines from msgsnd.txt and sends each
// with its type to the System V queue whose key is ftok(PATH, 0x27).
//   node examples/sysv-msgsnd.mjs /tmp/myshm [msgsnd.txt]
import { closeSync, openSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { close, ftok, IPC_CREAT, IPC_STAT, msgctl, msgget, msgsnd } from 'postbox/sysv';

const path = process.argv[2] ?? '/tmp/myshm';
const input = process.argv[3] ?? fileURLToPath(new URL('./msgsnd.txt', import.meta.url));
closeSync(openSync(path, 'a')); // the "shared file object" ftok needs
const key = await ftok(path, 0x27);
// key_t is signed: a project id of 0x80 or more gives a negative number. Print the 32 bits as
// unsigned hex, 8 digits, as \`postbox ls\` and ipcs show keys.
console.log(`IPC key = 0x${(key >>> 0).toString(16).padStart(8, '0')}`);
const msqid = await msgget(key, IPC_CREAT | 0o666);
let sent = 0;
for (const line of readFileSync(input, 'utf8').split('\n')) {
  const m = /^(\d+)\s+(.*)$/.exec(line.trim());
  if (m === null) continue;
  await msgsnd(msqid, Number(m[1]), m[2], 0); // blocking send
  console.log(`${m[1]} ${m[2]}`);
  sent++;
}
const ds = await msgctl(msqid, IPC_STAT);
console.log(`number of sent messages = ${sent}, messages in the queue = ${ds.msg_qnum}`);
await close();
