/**
 * One monitor per peer process, shared by every connection this process has with it: the
 * kernel keeps one monitor per live peer however many connections come and go, and the last
 * connection to stop watching takes it back.
 */
import type { DownEvent, PostboxProcess } from '../../client/process.js';
import type { PostboxError } from '../../protocol/errors.js';

type Listener = (event: DownEvent) => void;

interface Watch {
  readonly listeners: Set<Listener>;
  readonly stop: AbortController;
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
  const table = byPeer;
  let w = table.get(peer);
  if (w === undefined) {
    const watch: Watch = { listeners: new Set(), stop: new AbortController() };
    w = watch;
    table.set(peer, watch);
    proc.monitor(peer, { signal: watch.stop.signal }).then(
      (event) => {
        if (table.get(peer) === watch) table.delete(peer);
        for (const l of [...watch.listeners]) l({ ...event, process: peer });
        watch.listeners.clear();
      },
      // Taken back (no listener left), or this process closed or lost the kernel: its
      // connections learn that on their own.
      () => {
        if (table.get(peer) === watch) table.delete(peer);
        watch.listeners.clear();
      },
    );
  }
  const watch = w;
  watch.listeners.add(onDown);
  return () => {
    if (!watch.listeners.delete(onDown) || watch.listeners.size > 0) return;
    // The last connection with this peer stopped watching: the kernel forgets the monitor.
    if (table.get(peer) === watch) table.delete(peer);
    watch.stop.abort();
  };
}

const kernelWatches = new WeakMap<PostboxProcess, Set<(err: PostboxError) => void>>();

/**
 * Calls `onLost` once if the process loses its kernel (killed, shut down, silent), not if the
 * process closes itself. One wait on the process's `closed` serves all its connections, and a
 * connection that ends stops listening, so none is kept alive by the process. Returns a
 * function that stops calling it.
 */
export function watchKernel(proc: PostboxProcess, onLost: (err: PostboxError) => void): () => void {
  let listeners = kernelWatches.get(proc);
  if (listeners === undefined) {
    const set = new Set<(err: PostboxError) => void>();
    listeners = set;
    kernelWatches.set(proc, set);
    proc.closed.then((err) => {
      kernelWatches.delete(proc);
      const all = [...set];
      set.clear();
      if (err !== null) for (const l of all) l(err);
    });
  }
  const set = listeners;
  set.add(onLost);
  return () => {
    set.delete(onLost);
  };
}
