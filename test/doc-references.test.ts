/**
 * What the docs say about the code names things the code has: a newcomer who follows
 * docs/architecture.md to `Mailbox.take` in src/kernel/mailbox.ts must find it there, and a
 * renamed function or a moved file must not leave the docs pointing at nothing. Checked, in
 * README.md and docs/*.md, outside fenced blocks (shell commands and output there name built
 * files and paths on the reader's machine):
 *
 * - **Paths.** A path into the repository (`src/…`, `test/…`, `bench/…`, `scripts/…`,
 *   `examples/…`, `docs/…`, in backticks or not, and in backticks `kernel/…`, `client/…` and the
 *   other src/ folders, which are read under src/) names a file or folder that exists. Files
 *   that only a run makes (GENERATED) are let through.
 * - **`Name.member`.** In backticks, where `Name` is declared in src/ (a class, interface, type,
 *   const or function), `member` is declared by one of the files that declare `Name`. Other
 *   names (`Promise.all`, `Date.now()`) are Node's or the reader's, and are not looked for.
 * - **architecture.md's rule tables** (under "Where each rule of the contract lives"): in the
 *   column that says where a rule lives, every backticked name is found in the file named
 *   before it in that cell (`kernel/mailbox.ts`: `Mailbox.send`, `admitBlocked`): a member
 *   declared there, or its `Name.member` or plain name written there. A cell names a file first.
 *   In the tests column, each test file exists, and a "quoted" piece of a test's title after
 *   it is in that file.
 * - **architecture.md's layers** (the fenced block under "Layers"): each folder's line group
 *   names files that are in that folder, and every file of src/ and scripts/ is named in its
 *   folder's group (a file in a subfolder, by its own name or by the subfolder's, `commands/`).
 * - **protocol.md's flags**: each SEND, RECEIVE and PING flag of src/protocol/frame.ts is in
 *   the document with its value, and in the "What the kernel ignores" row of its frame, which
 *   says which bits the kernel reads.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { PingFlag, ReceiveFlag, SendFlag } from '../src/protocol/frame.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(`${root}${path}`, 'utf8');

/** Files a run writes and git ignores: named by the docs as where results go. */
const GENERATED = new Set(['bench/results/latest.json']);
/** src/ folders a backticked path may start with (read under src/). */
const SRC_FOLDERS = ['cli', 'client', 'faces', 'kernel', 'protocol', 'transport'];
const TOP_FOLDERS = ['src', 'test', 'bench', 'scripts', 'examples', 'docs'];

const DOCS = ['README.md', ...readdirSync(`${root}docs`).map((f) => `docs/${f}`)].filter((f) =>
  f.endsWith('.md'),
);

/** Every file under a folder of the repository, as paths from the root. */
function filesUnder(folder: string): string[] {
  const out: string[] = [];
  for (const entry of readdirSync(`${root}${folder}`, { withFileTypes: true })) {
    const path = `${folder}/${entry.name}`;
    if (entry.isDirectory()) out.push(...filesUnder(path));
    else out.push(path);
  }
  return out;
}
const SOURCES = filesUnder('src').filter((f) => f.endsWith('.ts'));
const sourceText = new Map(SOURCES.map((f) => [f, read(f)]));

/** A doc's lines outside fenced blocks, with their line numbers (from 1). */
function prose(doc: string): { line: number; text: string }[] {
  const out: { line: number; text: string }[] = [];
  let fenced = false;
  read(doc)
    .split('\n')
    .forEach((text, i) => {
      if (text.trimStart().startsWith('```')) fenced = !fenced;
      else if (!fenced) out.push({ line: i + 1, text });
    });
  return out;
}

const escapeRegExp = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Whether `name` is declared in source text: a class member (a generator too), a function, a const, an object key, a type's field. */
function declares(text: string, name: string): boolean {
  const modifiers =
    '(?:(?:export|default|private|public|protected|static|async|readonly|get|set|declare|override|abstract)\\s+)*';
  // A generator method (`async *pages()`) has its star where a kind would be.
  const kind = '(?:function\\*?\\s+|const\\s+|let\\s+|class\\s+|interface\\s+|type\\s+|enum\\s+|\\*\\s*)?';
  return new RegExp(
    `^\\s*(?:[|{]\\s*)*${modifiers}${kind}${escapeRegExp(name)}\\s*[?!]?\\s*[(<:=;,{]`,
    'm',
  ).test(text);
}

/** The files of src/ that declare a top-level name (a class, interface, type, const, function). */
function declaringFiles(name: string): string[] {
  const re = new RegExp(
    `^(?:export\\s+)?(?:default\\s+)?(?:abstract\\s+)?(?:class|interface|type|const|enum|function)\\s+${escapeRegExp(name)}\\b`,
    'm',
  );
  return SOURCES.filter((f) => re.test(sourceText.get(f)!));
}

/** Where a path a doc gives lies in the repository, or null if it is not one of its paths. */
function repoPath(token: string, backticked: boolean): string | null {
  const path = token.replace(/[.,:;)]+$/, '').replace(/:\d+$/, '');
  const first = path.split('/')[0]!;
  if (!path.includes('/')) return null;
  if (TOP_FOLDERS.includes(first)) return path;
  if (backticked && SRC_FOLDERS.includes(first)) return `src/${path}`;
  return null;
}

function exists(path: string): boolean {
  if (GENERATED.has(path)) return true;
  if (!existsSync(`${root}${path}`)) return false;
  return path.endsWith('/') ? statSync(`${root}${path}`).isDirectory() : true;
}

test('every repository path the docs name exists', () => {
  const problems: string[] = [];
  let checked = 0;
  for (const doc of DOCS) {
    for (const { line, text } of prose(doc)) {
      const seen = new Set<string>();
      for (const m of text.matchAll(/`([^`\s]+)`/g)) {
        const path = repoPath(m[1]!, true);
        if (path !== null) seen.add(path);
      }
      // Not part of a longer path or address (dist/bench/x.js, a URL).
      for (const m of text.matchAll(
        /(?<![\w./:-])((?:src|test|bench|scripts|examples|docs)\/[\w./-]*[\w/])/g,
      )) {
        const path = repoPath(m[1]!, false);
        if (path !== null) seen.add(path);
      }
      for (const path of seen) {
        checked++;
        if (!exists(path)) problems.push(`${doc}:${line}: ${path} does not exist`);
      }
    }
  }
  assert.ok(checked > 50, `found only ${checked} paths; is the extraction broken?`);
  assert.deepEqual(
    problems,
    [],
    `paths the docs name that are not in the repository:\n${problems.join('\n')}`,
  );
});

test('every Name.member the docs name is declared where Name is', () => {
  const problems: string[] = [];
  let checked = 0;
  for (const doc of DOCS) {
    for (const { line, text } of prose(doc)) {
      for (const m of text.matchAll(/`([A-Z]\w*)\.(#?\w+)(?:\(\))?`/g)) {
        const [, name, member] = m as unknown as [string, string, string];
        const files = declaringFiles(name);
        if (files.length === 0) continue; // not ours: Promise.all, Date.now()
        checked++;
        if (!files.some((f) => declares(sourceText.get(f)!, member)))
          problems.push(
            `${doc}:${line}: ${name}.${member}: ${files.join(', ')} declare ${name} but not ${member}`,
          );
      }
    }
  }
  assert.ok(checked > 100, `found only ${checked} names; is the extraction broken?`);
  assert.deepEqual(problems, [], `names the docs give that the code does not have:\n${problems.join('\n')}`);
});

/** The rows of architecture.md's rule tables: the cells of each, with its line. */
function ruleRows(): { line: number; cells: string[] }[] {
  const lines = read('docs/architecture.md').split('\n');
  const start = lines.findIndex((l) => l.startsWith('## Where each rule of the contract lives'));
  assert.ok(start >= 0, 'architecture.md has no "Where each rule of the contract lives" section');
  const rows: { line: number; cells: string[] }[] = [];
  for (let i = start + 1; i < lines.length && !lines[i]!.startsWith('## '); i++) {
    const l = lines[i]!;
    if (!l.startsWith('|') || /^\|\s*-/.test(l)) continue;
    const cells = l
      .slice(1, l.trimEnd().length - 1)
      .split(' | ')
      .map((c) => c.trim());
    if (cells[0] === 'rule') continue; // a header
    rows.push({ line: i + 1, cells });
  }
  return rows;
}

test("architecture.md's rule tables: each name is in the file named before it, each test exists", () => {
  const rows = ruleRows();
  assert.ok(rows.length > 30, `found only ${rows.length} rules; is the extraction broken?`);
  const problems: string[] = [];
  for (const { line, cells } of rows) {
    const [rule, code, tests] = cells;
    if (code === undefined || tests === undefined) {
      problems.push(`:${line}: a rule row has three cells (rule, code, tests): ${rule}`);
      continue;
    }
    let file: string | null = null;
    for (const m of code.matchAll(/`([^`]+)`/g)) {
      const token = m[1]!;
      const path = repoPath(token, true);
      if (path !== null) {
        if (!exists(path)) problems.push(`:${line}: ${path} does not exist`);
        file = path;
        continue;
      }
      const name = /^(?:([A-Z]\w*)\.)?(#?[A-Za-z_]\w*)(?:\(\))?$/.exec(token);
      if (name === null) continue; // a flag, a string, an option value: not a name
      if (file === null) {
        problems.push(`:${line}: \`${token}\` comes before any file in its cell; name the file first`);
        continue;
      }
      const text = existsSync(`${root}${file}`) ? read(file) : '';
      const [, owner, member] = name as unknown as [string, string | undefined, string];
      const found =
        declares(text, member) ||
        (owner === undefined
          ? new RegExp(`(?<![\\w#])${escapeRegExp(member)}\\b`).test(text)
          : text.includes(`${owner}.${member}`));
      if (!found) problems.push(`:${line}: \`${token}\` is not in ${file}`);
    }
    if (file === null) problems.push(`:${line}: the code cell names no file: ${rule}`);
    let testFile: string | null = null;
    let named = 0;
    for (const m of tests.matchAll(/`([^`]+)`|"([^"]+)"/g)) {
      if (m[1] !== undefined) {
        testFile = repoPath(m[1], true);
        if (testFile === null || !testFile.startsWith('test/'))
          problems.push(`:${line}: the tests cell names \`${m[1]}\`, not a test file`);
        else if (!exists(testFile)) problems.push(`:${line}: ${testFile} does not exist`);
        else named++;
      } else if (testFile !== null && exists(testFile) && !read(testFile).includes(m[2]!)) {
        problems.push(`:${line}: no test titled "…${m[2]}…" in ${testFile}`);
      }
    }
    if (named === 0) problems.push(`:${line}: no test named for: ${rule}`);
  }
  assert.deepEqual(
    problems,
    [],
    `docs/architecture.md's rule tables say what the code does not:\n${problems.map((p) => `docs/architecture.md${p}`).join('\n')}`,
  );
});

test("architecture.md's layers name every file of src/ and scripts/, each in its folder", () => {
  const lines = read('docs/architecture.md').split('\n');
  const start = lines.findIndex((l) => l.startsWith('## Layers'));
  const open = lines.findIndex((l, i) => i > start && l.startsWith('```'));
  const close = lines.findIndex((l, i) => i > open && l.startsWith('```'));
  assert.ok(
    start >= 0 && open > start && close > open,
    'architecture.md has no fenced block under "## Layers"',
  );
  // Each group starts with its folder at the start of a line: "src/kernel/     the daemon: …".
  const groups = new Map<string, string>();
  let folder: string | null = null;
  for (const l of lines.slice(open + 1, close)) {
    const head = /^((?:src\/\w+|scripts)\/)\s/.exec(l);
    if (head !== null) {
      folder = head[1]!;
      groups.set(folder, '');
    }
    if (folder !== null)
      groups.set(folder, `${groups.get(folder)} ${head === null ? l : l.slice(folder.length)}`);
  }
  const problems: string[] = [];
  for (const [dir, text] of groups) {
    const files = filesUnder(dir.slice(0, -1)).map((f) => f.slice(dir.length));
    // Names of files (kernel.ts) and of subfolders (commands/) the group gives.
    for (const m of text.matchAll(/(?<![\w/.-])([\w-]+(?:\.(?:ts|mjs)|\/))(?![\w-])/g)) {
      const name = m[1]!;
      const here = name.endsWith('/')
        ? files.some((f) => f.startsWith(name) || f.includes(`/${name}`))
        : files.some((f) => f === name || f.endsWith(`/${name}`));
      if (!here) problems.push(`${dir}: names ${name}, which is not in ${dir}`);
    }
    for (const f of files) {
      const base = f.slice(f.lastIndexOf('/') + 1);
      const sub = f.includes('/') ? `${f.slice(0, f.indexOf('/'))}/` : null;
      const named = (n: string): boolean =>
        new RegExp(`(?<![\\w/.-])${escapeRegExp(n)}(?![\\w-])`).test(text);
      if (!named(base) && (sub === null || !named(sub)))
        problems.push(`${dir}${f} is not named in the ${dir} group`);
    }
  }
  for (const dir of ['src/', ...readdirSync(`${root}src`).map((d) => `src/${d}/`), 'scripts/'])
    if (dir !== 'src/' && !groups.has(dir)) problems.push(`${dir} has no group of its own`);
  assert.deepEqual(problems, [], `docs/architecture.md's layers are out of date:\n${problems.join('\n')}`);
});

test("protocol.md gives every flag of frame.ts its value, and says which bits each frame's kernel reads", () => {
  const doc = read('docs/protocol.md');
  const from = doc.indexOf('### What the kernel ignores');
  assert.ok(from >= 0, 'protocol.md has no "What the kernel ignores" section');
  const section = doc.slice(from, doc.indexOf('\n## ', from));
  const ignored = (frame: string): string => {
    const row = new RegExp(`^\\|\\s*${frame}\\s*\\|(.*)$`, 'm').exec(section);
    assert.ok(row, `protocol.md's "What the kernel ignores" has no ${frame} row`);
    return row[1]!;
  };
  const problems: string[] = [];
  for (const [frame, flags] of [
    ['SEND', SendFlag],
    ['RECEIVE', ReceiveFlag],
    ['PING', PingFlag],
  ] as const) {
    const row = ignored(frame);
    for (const [name, value] of Object.entries(flags)) {
      const hex = `0x${value.toString(16).padStart(2, '0')}`;
      if (!new RegExp(`\\b${name}\\b[\\s|*(]{1,20}${hex}\\b`).test(doc))
        problems.push(`${frame} flag ${name} (${hex}) is not given with its value`);
      if (!new RegExp(`\\b${name}\\b`).test(row))
        problems.push(
          `the ${frame} row of "What the kernel ignores" does not name ${name} among the bits it reads`,
        );
    }
  }
  assert.deepEqual(
    problems,
    [],
    `docs/protocol.md and src/protocol/frame.ts differ:\n${problems.join('\n')}`,
  );
});
