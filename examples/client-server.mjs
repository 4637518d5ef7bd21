// Client and server through a port, as with sockets: the server listens on port 'upper' and
// answers each message in upper case; the client dials it, sends three lines, reads each answer,
// and ends. Each process could be on another machine (POSTBOX_URL=tcp://…).
//   node examples/client-server.mjs        (against a running kernel: npm start)
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { connect } from 'postbox';
import { dial, listen } from 'postbox/connection';

const role = process.argv[2];
if (role === undefined) {
  const server = fork(fileURLToPath(import.meta.url), ['server']);
  const [ready] = await Promise.race([once(server, 'message'), once(server, 'exit')]);
  if (ready !== 'listening') process.exit(1);
  const client = fork(fileURLToPath(import.meta.url), ['client']);
  const [[clientCode], [serverCode]] = await Promise.all([once(client, 'exit'), once(server, 'exit')]);
  process.exitCode = clientCode || serverCode;
} else if (role === 'server') {
  const me = await connect();
  const port = await listen(me, 'upper');
  console.log("server: listening on port 'upper'");
  process.send('listening');
  const conn = await port.accept(); // one client, then stop listening
  await port.close();
  let lines = 0;
  for await (const m of conn.messages()) {
    await conn.send(m.text().toUpperCase());
    lines++;
  }
  // The loop ended: the client ended its side, after everything it sent.
  console.log(`server: client process ${conn.peer.id} ended; served ${lines} lines`);
  await conn.close();
  await me.close();
} else {
  const me = await connect();
  const conn = await dial(me, 'upper', { timeout: 5000 });
  for (const line of ['hello, server', 'message passing', 'goodbye']) {
    await conn.send(line);
    const answer = await conn.receive();
    console.log(`client: sent '${line}' and got back '${answer.text()}'`);
  }
  conn.end(); // no more from this side: the server's loop ends
  if ((await conn.receive()) === null) console.log('client: the server ended the connection');
  await conn.close();
  await me.close();
}
