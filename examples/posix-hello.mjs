// The lecture's POSIX hello world: the parent creates /mq, sends "Hello!" with priority 1, and
// the child receives it. (The notes' name "mq" is refused, on Linux too: it must start with '/'.)
//   node examples/posix-hello.mjs
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  close,
  mq_close,
  mq_open,
  mq_receive,
  mq_send,
  mq_unlink,
  O_CREAT,
  O_RDONLY,
  O_RDWR,
} from 'postbox/posix';

if (process.argv[2] === 'child') {
  const mqd = await mq_open('/mq', O_RDONLY);
  const { data, priority } = await mq_receive(mqd, 64);
  console.log(`child: received "${data}" with priority ${priority}`);
  await mq_close(mqd);
} else {
  const mqd = await mq_open('/mq', O_CREAT | O_RDWR, 0o644, { mq_maxmsg: 10, mq_msgsize: 64 });
  await mq_send(mqd, 'Hello!', 1);
  console.log('parent: sent "Hello!" with priority 1');
  const child = fork(fileURLToPath(import.meta.url), ['child']);
  await new Promise((resolve) => child.once('exit', resolve));
  await mq_close(mqd);
  await mq_unlink('/mq');
}
await close();
