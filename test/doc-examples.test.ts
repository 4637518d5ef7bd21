/**
 * Every TypeScript and JavaScript example a user reads compiles against the package as they
 * would import it ('postbox', 'postbox/rpc', …, resolved through package.json "exports" to the
 * built .d.ts): the ```ts and ```js blocks of README.md and docs/*.md, and the ```ts blocks in
 * the doc comments of every name an entry point exports and of its members (what an editor
 * shows on hover), and in the overview at the top of the files that declare them.
 *
 * Rules, so that a failure says what to fix:
 * - Only ```ts and ```js fences are checked; output, shell and hex dumps use other fences. A
 *   block right after a `<!-- not checked -->` line is skipped.
 * - A block with no import is a fragment: the names it uses from the package are imported for
 *   it (from its own entry point first, for TSDoc). A block with an import is a program and
 *   must import what it uses itself.
 * - The variables fragments take for granted (`me`, `box`, your own `handle()`) are declared in
 *   ASSUMED below, each as the prose around the examples describes it.
 * - A line `// name.ts` starts a file of that name, so one example can import another
 *   (rpc.md's client.ts imports './calc-server.js'). Examples of one document share a folder.
 *
 * All snippets are virtual files in one program over the built package (npm test builds it
 * first); nothing is written to disk.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as {
  name: string;
  exports: Record<string, { types: string }>;
};
/** Virtual files live here, inside the package, so that `import … from 'postbox'` resolves as a self-reference. */
const virtualRoot = `${root}.doc-examples/`;
const assumedFile = `${virtualRoot}assumed.ts`;

// Every .ts file here is a module (package.json says "type": "module"), so these are made global.
const ASSUMED = `export {};
declare global {
  // The process an example connected, as in "const me = await connect()".
  const me: import('postbox').PostboxProcess;
  const proc: import('postbox').PostboxProcess;
  // A mailbox it opened.
  const box: import('postbox').Mailbox;
  const mailbox: import('postbox').Mailbox;
  const jobs: import('postbox').Mailbox<{ task: string; id: number }>;
  // The reader's own work.
  function handle(m: unknown): Promise<void> | boolean | void;
  function work(body: unknown): Promise<void>;
  function resize(body: unknown): Promise<void>;
  function load(day: Date, options: { signal: AbortSignal }): Promise<[string, number][]>;
  function retryLater(): void;
  function retry(bodies: unknown[]): void;
  const bodies: string[];
  const allowed: Set<number>;
  // rpc.md's service, whose client imports its type from './calc-server.js'.
  type Calc = import('./docs/rpc.md/calc-server.js').Calc;
  const handlers: Calc;
  // A stub of it; with a divide() that can throw, for RemoteError's example.
  const calc: import('postbox/rpc').Stub<Calc & { divide(a: number, b: number): number }>;
  // A queue the example opened with mq_open() or msgget().
  const mqd: number;
  const id: number;
  // A frame read off the wire, for the protocol's own examples.
  const frame: Buffer;
  const receiveRequestId: number;
  const mailboxId: number;
}
`;

/** Node's own names that fragments use, imported for them as a Node program would. */
const NODE_IMPORTS: Record<string, string> = {
  pipeline: "import { pipeline } from 'node:stream';",
  readFileSync: "import { readFileSync } from 'node:fs';",
  net: "import net from 'node:net';",
};

interface Snippet {
  /** Where the reader sees it, for the failure message: 'docs/rpc.md'. */
  doc: string;
  /** Line in doc of the snippet's first line. */
  line: number;
  code: string;
  js: boolean;
  /** For TSDoc, the entry point whose export it documents: its own names are imported first. */
  entry?: string;
}

function markdownSnippets(doc: string): Snippet[] {
  const lines = readFileSync(`${root}${doc}`, 'utf8').split('\n');
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)/.exec(lines[i] ?? '');
    if (open === null) continue;
    let end = i + 1;
    while (end < lines.length && !(lines[end] ?? '').startsWith('```')) end++;
    let before = i - 1;
    while (before >= 0 && (lines[before] ?? '').trim() === '') before--;
    const skipped = (lines[before] ?? '').trim() === '<!-- not checked -->';
    const lang = open[1];
    if ((lang === 'ts' || lang === 'js') && !skipped)
      out.push({ doc, line: i + 2, code: lines.slice(i + 1, end).join('\n'), js: lang === 'js' });
    i = end;
  }
  return out;
}

/** The ```ts blocks in a doc comment that starts at `start` in `source`. */
function fencedInComment(
  source: ts.SourceFile,
  start: number,
  end: number,
  doc: string,
  entry: string,
): Snippet[] {
  // Without their ` * ` margin; line k of the comment is line first + k of the file.
  const lines = source.text
    .slice(start, end)
    .split('\n')
    .map((l) => l.replace(/^\s*(\/\*\*|\*\/|\*)\s?/, ''));
  const first = source.getLineAndCharacterOfPosition(start).line + 1;
  const out: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^```ts\s*$/.test(lines[i] ?? '')) continue;
    let close = i + 1;
    while (close < lines.length && !(lines[close] ?? '').startsWith('```')) close++;
    out.push({ doc, line: first + i + 1, code: lines.slice(i + 1, close).join('\n'), js: false, entry });
    i = close;
  }
  return out;
}

/**
 * The ```ts blocks in the doc comments of every exported name and of its members (what an
 * editor shows on hover), and in each entry point's overview at the top of its file.
 */
function tsdocSnippets(entries: { name: string; src: string }[]): Snippet[] {
  const program = ts.createProgram(
    entries.map((e) => `${root}${e.src}`),
    { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true },
  );
  const checker = program.getTypeChecker();
  const out = new Map<string, Snippet>();
  const add = (source: ts.SourceFile, start: number, end: number, entry: string) => {
    const doc = source.fileName.slice(root.length);
    for (const s of fencedInComment(source, start, end, doc, entry)) out.set(`${doc}:${s.line}`, s);
  };
  const visited = new Set<ts.Symbol>();
  const visit = (symbol: ts.Symbol, entry: string) => {
    if (visited.has(symbol)) return;
    visited.add(symbol);
    for (const decl of symbol.declarations ?? [])
      for (const jsDoc of ts.getJSDocCommentsAndTags(decl))
        if (ts.isJSDoc(jsDoc)) add(decl.getSourceFile(), jsDoc.getStart(), jsDoc.end, entry);
    symbol.members?.forEach((m) => {
      visit(m, entry);
    });
  };
  // A file's overview, at its top, is documentation of the module it declares exports in.
  const overviews = new Map<ts.SourceFile, string>();
  for (const { name, src } of entries) {
    const source = program.getSourceFile(`${root}${src}`);
    assert.ok(source, `${src} (package.json exports '${name}') is missing`);
    if (!overviews.has(source)) overviews.set(source, name);
    const module = checker.getSymbolAtLocation(source);
    assert.ok(module, `${src} is not a module`);
    for (const symbol of checker.getExportsOfModule(module)) {
      const target = symbol.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(symbol) : symbol;
      visit(target, name);
      for (const d of target.declarations ?? [])
        if (!overviews.has(d.getSourceFile())) overviews.set(d.getSourceFile(), name);
    }
  }
  for (const [source, entry] of overviews)
    for (const c of ts.getLeadingCommentRanges(source.text, 0) ?? [])
      if (source.text.startsWith('/**', c.pos)) add(source, c.pos, c.end, entry);
  return [...out.values()];
}

/** Names a fragment declares at its top level: these are its own, not the package's. */
function declaredNames(source: ts.SourceFile): Set<string> {
  const names = new Set<string>();
  const bind = (name: ts.BindingName) => {
    if (ts.isIdentifier(name)) names.add(name.text);
    else for (const e of name.elements) if (!ts.isOmittedExpression(e)) bind(e.name);
  };
  for (const s of source.statements) {
    if (ts.isVariableStatement(s)) for (const d of s.declarationList.declarations) bind(d.name);
    else if (
      (ts.isFunctionDeclaration(s) ||
        ts.isClassDeclaration(s) ||
        ts.isInterfaceDeclaration(s) ||
        ts.isTypeAliasDeclaration(s)) &&
      s.name !== undefined
    )
      names.add(s.name.text);
  }
  return names;
}

/** Identifiers a fragment uses as names (not as `.property` or `{ key: … }`). */
function usedNames(source: ts.SourceFile): Set<string> {
  const names = new Set<string>();
  const walk = (node: ts.Node) => {
    if (ts.isIdentifier(node)) {
      const p = node.parent;
      const isKey =
        (ts.isPropertyAccessExpression(p) && p.name === node) ||
        ((ts.isPropertyAssignment(p) || ts.isMethodDeclaration(p) || ts.isPropertySignature(p)) &&
          p.name === node);
      if (!isKey) names.add(node.text);
    }
    ts.forEachChild(node, walk);
  };
  walk(source);
  return names;
}

interface VirtualFile {
  path: string;
  text: string;
  snippet: Snippet;
  /** Line in the snippet where this file starts. */
  fromLine: number;
}

test('every ts/js example in the docs and the TSDoc compiles against the package', () => {
  const entries = Object.entries(pkg.exports).map(([name, e]) => ({
    name: name === '.' ? pkg.name : `${pkg.name}/${name.slice(2)}`,
    file: `${root}${e.types}`,
    // The source the .d.ts was built from: its comments and their lines are the ones to fix.
    src: e.types.replace(/^\.\/dist\//, '').replace(/\.d\.ts$/, '.ts'),
  }));
  const options: ts.CompilerOptions = {
    strict: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    lib: ['lib.es2023.d.ts'],
    types: ['node'],
    allowJs: true,
    checkJs: true,
    skipLibCheck: true,
    noEmit: true,
  };
  const apiProgram = ts.createProgram(
    entries.map((e) => e.file),
    options,
  );
  const checker = apiProgram.getTypeChecker();
  const exportsOf = new Map<string, Set<string>>();
  for (const { name, file } of entries) {
    const source = apiProgram.getSourceFile(file);
    assert.ok(source, `${file} (package.json exports '${name}') was not built`);
    const module = checker.getSymbolAtLocation(source);
    exportsOf.set(name, new Set(module ? checker.getExportsOfModule(module).map((s) => s.name) : []));
  }

  const docs = ['README.md', ...readdirSync(`${root}docs`).map((f) => `docs/${f}`)].filter((f) =>
    f.endsWith('.md'),
  );
  const snippets = [...docs.flatMap(markdownSnippets), ...tsdocSnippets(entries)];
  assert.ok(snippets.length > 50, `found only ${snippets.length} examples; is the extraction broken?`);

  const files = new Map<string, VirtualFile>();
  for (const s of snippets) {
    const lines = s.code.split('\n');
    // Split at `// name.ts` lines: each part is its own file.
    const starts = [0];
    for (let i = 1; i < lines.length; i++) if (/^\/\/ [\w.-]+\.ts$/.test(lines[i] ?? '')) starts.push(i);
    starts.forEach((from, k) => {
      const part = lines.slice(from, starts[k + 1] ?? lines.length);
      const named = /^\/\/ ([\w.-]+)\.ts$/.exec(part[0] ?? '');
      const ext = s.js ? 'js' : 'ts';
      const path = `${virtualRoot}${s.doc}/${named ? named[1] : `L${s.line + from}`}.${ext}`;
      assert.ok(!files.has(path), `${s.doc}:${s.line + from}: a second example is named ${path}`);
      const text = part.join('\n');
      const source = ts.createSourceFile(path, text, ts.ScriptTarget.ES2022, true);
      let preamble = '';
      if (!source.statements.some(ts.isImportDeclaration)) {
        const own = declaredNames(source);
        const order = [...(s.entry ? [s.entry] : []), ...entries.map((e) => e.name)];
        const imports = new Map<string, string[]>();
        for (const name of usedNames(source)) {
          if (own.has(name)) continue;
          const from = order.find((e) => exportsOf.get(e)?.has(name));
          if (from !== undefined) imports.set(from, [...(imports.get(from) ?? []), name]);
          else if (Object.hasOwn(NODE_IMPORTS, name)) preamble += NODE_IMPORTS[name];
        }
        for (const [from, names] of imports) preamble += `import { ${names.join(', ')} } from '${from}';`;
      }
      // The imports take one line (maybe empty) before the snippet's first.
      files.set(path, { path, text: `${preamble}\n${text}\n`, snippet: s, fromLine: from });
    });
  }

  const host = ts.createCompilerHost(options);
  const { getSourceFile, fileExists, readFile } = host;
  const dirs = new Set([...files.keys(), assumedFile].map((f) => f.slice(0, f.lastIndexOf('/'))));
  const { directoryExists } = host;
  host.directoryExists = (d) =>
    [...dirs].some((v) => v === d || v.startsWith(`${d}/`)) || (directoryExists?.call(host, d) ?? false);
  host.fileExists = (f) => files.has(f) || f === assumedFile || fileExists.call(host, f);
  host.readFile = (f) => files.get(f)?.text ?? (f === assumedFile ? ASSUMED : readFile.call(host, f));
  host.getSourceFile = (f, lang, onError, create) => {
    const text = files.get(f)?.text ?? (f === assumedFile ? ASSUMED : undefined);
    return text === undefined
      ? getSourceFile.call(host, f, lang, onError, create)
      : ts.createSourceFile(f, text, lang);
  };
  const program = ts.createProgram([assumedFile, ...files.keys()], options, host, apiProgram);

  const problems: string[] = [];
  for (const d of ts.getPreEmitDiagnostics(program)) {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n  ');
    const f = d.file ? files.get(d.file.fileName) : undefined;
    if (d.file === undefined || f === undefined) {
      const where = d.file
        ? `${d.file.fileName}:${d.file.getLineAndCharacterOfPosition(d.start ?? 0).line + 1}`
        : '';
      problems.push(`${where}: ${message}`);
      continue;
    }
    const { line } = d.file.getLineAndCharacterOfPosition(d.start ?? 0);
    problems.push(`${f.snippet.doc}:${f.snippet.line + f.fromLine + line - 1}: ${message}`);
  }
  assert.deepEqual(problems, [], `examples that do not compile:\n${problems.join('\n')}`);
});
