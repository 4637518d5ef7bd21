/**
 * What a name may be. Names are printed by `postbox ls` and `ps`, in logs and in error messages:
 * a control character in one would drive the terminal that shows it (an escape sequence can
 * clear the screen or retitle the window), and a line break would forge a line. Mailbox names
 * starting with '#' would read as ids: `#5` is how the command line and `ls` name mailbox 5.
 */

/**
 * C0 controls, DEL, and the C1 controls (which some terminals act on too); the line and paragraph
 * separators, which break a line as a newline does; and the bidirectional embeddings, overrides
 * and isolates, which reorder what follows them on the line, so a name could show as another
 * (`ls` would print a name of U+202E as the rest of its row backwards).
 */
export function isControl(c: number): boolean {
  return (
    c < 0x20 ||
    (c >= 0x7f && c <= 0x9f) ||
    c === 0x2028 ||
    c === 0x2029 ||
    (c >= 0x202a && c <= 0x202e) ||
    (c >= 0x2066 && c <= 0x2069)
  );
}

function hasControl(name: string): boolean {
  for (let i = 0; i < name.length; i++) if (isControl(name.charCodeAt(i))) return true;
  return false;
}

/**
 * `text` quoted, with every control character written as an escape (JSON's own leaves DEL, the
 * C1 controls, the separators and the bidirectional controls as they are): safe to show on a
 * terminal.
 */
export function quoteSafely(text: string): string {
  let out = '';
  for (const c of JSON.stringify(text)) {
    const code = c.charCodeAt(0);
    out += code >= 0x7f && isControl(code) ? `\\u${code.toString(16).padStart(4, '0')}` : c;
  }
  return out;
}

/** Longest process name, in UTF-16 units (the HELLO's `name`). */
export const MAX_PROCESS_NAME = 255;
/** Longest mailbox name: room for the faces' prefixes (`port:`, `rpc:`) on a 255-long name. */
export const MAX_MAILBOX_NAME = 1024;

/** Why `name` cannot name a mailbox, or null if it can. */
export function badMailboxName(name: string): string | null {
  if (hasControl(name)) return `a mailbox name cannot hold control characters: ${quoteSafely(name)}`;
  if (name.startsWith('#')) return `a mailbox name cannot start with '#' (that names an id): '${name}'`;
  return null;
}

/** Longest host name in a HELLO: a DNS name is at most 253 characters. */
export const MAX_HOST_NAME = 255;

/** Why `host` cannot be a process's host (shown by `postbox ps`), or null if it can. */
export function badHostName(host: string): string | null {
  if (host.length > MAX_HOST_NAME) return `host must be at most ${MAX_HOST_NAME} characters`;
  if (hasControl(host)) return `host cannot hold control characters: ${quoteSafely(host)}`;
  return null;
}

/** Why `name` cannot name a process, or null if it can. */
export function badProcessName(name: string): string | null {
  if (hasControl(name)) return `a process name cannot hold control characters: ${quoteSafely(name)}`;
  if (/^\d+$/.test(name)) return 'a process name must not be all digits (it would read as a process id)';
  if (name.startsWith('#')) return `a process name cannot start with '#' (that names an id): '${name}'`;
  return null;
}
