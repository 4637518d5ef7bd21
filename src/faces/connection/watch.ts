/**
 * One monitor per peer process, shared by every connection this process has with it. The client
 * cannot take a monitor back (see docs/connections.md, "Limits"), so sharing keeps the kernel's
 * monitors to one per live peer however many connections come and go.
 */
import type { DownEvent, PostboxProcess } from '../../client/process.js';

type Listener = (event: DownEvent) => void;

interface Watch {
  readonly listeners: Set<Listener>;
}

const watches = new WeakMap<PostboxProcess, Map<number, Watch>>();

/**
 * Calls `onDown` once when process `peer` terminates (at once, reason 'noproc', if it already
 * has). Returns a function that stops calling it.
 */
export function watchProcess(proc: PostboxProcess, peer: number, onDown: Listener): () => void {
  let byPeer = watches.get(proc);
  if (byPeer === undefined) {
    byPeer = new Map();
    watches.set(proc, byPeer);
  }
  let w = byPeer.get(peer);
  if (w === undefined) {
    const watch: Watch = { listeners: new Set() };
    w = watch;
    const table = byPeer;
    table.set(peer, watch);
    proc.monitor(peer).then(
      (event) => {
        if (table.get(peer) === watch) table.delete(peer);
        for (const l of [...watch.listeners]) l({ ...event, process: peer });
        watch.listeners.clear();
      },
      // This process closed or lost the kernel: its connections learn that on their own.
      () => {
        if (table.get(peer) === watch) table.delete(peer);
        watch.listeners.clear();
      },
    );
  }
  const listeners = w.listeners;
  listeners.add(onDown);
  return () => {
    listeners.delete(onDown);
  };
}
