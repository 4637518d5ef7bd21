/**
 * The package as another project gets it from `npm pack`: what the tarball holds, that every
 * entry point in package.json "exports" loads as an installed package would (import and
 * require), and that the options a user passes can be named by an import. Offline and fast:
 * `npm pack --dry-run --ignore-scripts` lists the files without building or writing anything.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import ts from 'typescript';
import { withoutInternal } from '../scripts/published-types.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const pkg = JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as {
  name: string;
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, { types: string; default: string }>;
};
/** 'postbox', 'postbox/pipe', …: what a user writes in an import. */
const specifiers = Object.keys(pkg.exports).map((k) => (k === '.' ? pkg.name : `${pkg.name}/${k.slice(2)}`));

test('npm pack ships the built library, its docs and licence, and nothing else', async () => {
  const { stdout } = await promisify(execFile)(
    'npm',
    ['pack', '--dry-run', '--json', '--ignore-scripts', '--offline'],
    { cwd: root, timeout: 60_000 },
  );
  const [packed] = JSON.parse(stdout) as [{ files: { path: string }[] }];
  const files = new Set(packed.files.map((f) => f.path));
  // Tests, benchmarks, examples and source maps stay home: the maps point at src/*.ts, which is
  // not shipped, so a bundler or debugger that follows them reports missing files.
  const stray = [...files].filter(
    (f) =>
      !/^dist\/src\/.+\.(js|d\.ts)$/.test(f) &&
      !/^docs\/[\w.-]+\.(md|svg)$/.test(f) &&
      !['package.json', 'README.md', 'LICENSE'].includes(f),
  );
  assert.deepEqual(stray, [], `files npm pack would ship but should not:\n${stray.join('\n')}`);
  assert.ok(files.has('LICENSE'), 'the MIT licence text ships with the code');
  const targets = [pkg.main, pkg.types, ...Object.values(pkg.bin)].concat(
    ...Object.values(pkg.exports).map((e) => [e.types, e.default]),
  );
  const missing = targets.map((t) => t.replace(/^\.\//, '')).filter((t) => !files.has(t));
  assert.deepEqual(missing, [], `package.json points at files npm pack leaves out:\n${missing.join('\n')}`);
  // README's links to docs/ work in the installed copy too.
  const linked = [...readFileSync(`${root}README.md`, 'utf8').matchAll(/\]\((docs\/[^)#\s]+)/g)].map(
    (m) => m[1],
  );
  assert.ok(linked.length > 0, 'README links to docs/');
  for (const doc of linked) assert.ok(files.has(doc!), `README links to ${doc}, which npm pack leaves out`);
  const bin = readFileSync(`${root}${Object.values(pkg.bin)[0]}`, 'utf8');
  assert.match(bin, /^#!\/usr\/bin\/env node\n/, 'the postbox command runs with node when installed');
});

test('every entry point in package.json "exports" loads by import, as an installed package', async () => {
  // Inside the package, its own name resolves through "exports" as it does from node_modules.
  for (const s of specifiers) {
    const module = (await import(s)) as Record<string, unknown>;
    assert.ok(Object.keys(module).length > 0, `${s} exports nothing`);
  }
});

test('every entry point loads by require() from CommonJS, where Node can require ES modules', {
  skip: process.features.require_module
    ? false
    : 'this Node cannot require() an ES module (20.19 or later can)',
}, async () => {
  // require() of an ES module fails (ERR_REQUIRE_ASYNC_MODULE) if any module it loads has a
  // top-level await: this keeps every entry point loadable from a CommonJS project.
  const require = createRequire(import.meta.url);
  for (const s of specifiers) {
    const required = require(s) as Record<string, unknown>;
    const imported = (await import(s)) as Record<string, unknown>;
    assert.deepEqual(Object.keys(required).sort(), Object.keys(imported).sort(), s);
  }
});

test('an options bag of two or more options in the public API is a type the user can import', () => {
  const program = ts.createProgram(
    Object.values(pkg.exports).map((e) => `${root}${e.types}`),
    {
      strict: true,
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      noEmit: true,
    },
  );
  const checker = program.getTypeChecker();
  const unnamed: string[] = [];
  const hidden = (m: ts.Node): boolean =>
    (ts.canHaveModifiers(m) &&
      (ts.getModifiers(m) ?? []).some((k) => k.kind === ts.SyntaxKind.PrivateKeyword)) ||
    ts.getJSDocTags(m).some((t) => t.tagName.text === 'internal');
  const check = (fn: ts.SignatureDeclarationBase, where: string): void => {
    for (const p of fn.parameters) {
      // An inline `{ a?: …; b?: … }`, alone or in a union: a wrapper that passes options on
      // would have to spell it out again, or dig it out with Parameters<…>.
      const literal = (t: ts.TypeNode | undefined): boolean =>
        t !== undefined &&
        ((ts.isTypeLiteralNode(t) && t.members.length > 1) ||
          (ts.isUnionTypeNode(t) && t.types.some(literal)));
      if (literal(p.type)) unnamed.push(`${where}(${p.name.getText()})`);
    }
  };
  const seen = new Set<ts.Symbol>();
  for (const [entry, e] of Object.entries(pkg.exports)) {
    const module = checker.getSymbolAtLocation(program.getSourceFile(`${root}${e.types}`)!);
    assert.ok(module, `${e.types} is not a module`);
    for (const exported of checker.getExportsOfModule(module)) {
      const symbol = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
      if (seen.has(symbol)) continue;
      seen.add(symbol);
      const where = `${entry === '.' ? pkg.name : `${pkg.name}/${entry.slice(2)}`}: ${symbol.name}`;
      for (const d of symbol.declarations ?? []) {
        if (ts.isFunctionDeclaration(d)) check(d, where);
        if (ts.isClassDeclaration(d) || ts.isInterfaceDeclaration(d))
          for (const m of d.members)
            if (
              (ts.isMethodDeclaration(m) || ts.isMethodSignature(m) || ts.isConstructorDeclaration(m)) &&
              !hidden(m)
            )
              check(m, `${where}.${m.name?.getText() ?? 'constructor'}`);
      }
    }
  }
  assert.deepEqual(unnamed, [], `options typed inline, with no exported name:\n${unnamed.join('\n')}`);
});

/** Every .d.ts under dir, by path, as `npm pack` ships it (prepack strips what is internal). */
function publishedTypes(dir: string, into = new Map<string, string>()): Map<string, string> {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, e.name);
    if (e.isDirectory()) publishedTypes(path, into);
    else if (e.name.endsWith('.d.ts')) into.set(path, withoutInternal(path, readFileSync(path, 'utf8')));
  }
  return into;
}

test('the published .d.ts show the public API alone, and type-check as a strict project reads them', () => {
  const scripts = (
    JSON.parse(readFileSync(`${root}package.json`, 'utf8')) as { scripts: Record<string, string> }
  ).scripts;
  for (const s of ['prepack', 'build'])
    assert.match(scripts[s]!, /tsc -p tsconfig\.json[^&]*&& node dist\/scripts\/published-types\.js$/, s);
  const files = publishedTypes(`${root}dist/src`);
  // What the library's own modules call on each other (a mailbox's deliver, a send promise's
  // resolve) was offered by a user's editor as if it were API.
  const marked = [...files].filter(([, text]) => /@internal\b/.test(text)).map(([path]) => path);
  assert.deepEqual(marked, [], 'declarations marked @internal are published');
  // A user's project: one file that makes what only the library makes.
  const user = `${root}published-types-user.ts`;
  const userText = [
    "import { Mailbox, Message, PostboxProcess } from 'postbox';",
    'export const m = new Message(Buffer.alloc(0), 0, 0);',
    'export const b = new Mailbox();',
    'export class Mine extends PostboxProcess {}',
  ].join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
    types: ['node'],
    skipLibCheck: false,
    noEmit: true,
  };
  const host = ts.createCompilerHost(options);
  const read = (path: string): string | undefined => (path === user ? userText : files.get(path));
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (path) => read(path) !== undefined || fileExists.call(host, path);
  host.readFile = (path) => read(path) ?? readFile.call(host, path);
  host.getSourceFile = (path, language, ...rest) => {
    const text = read(path);
    return text !== undefined
      ? ts.createSourceFile(path, text, language)
      : getSourceFile.call(host, path, language, ...rest);
  };
  const program = ts.createProgram(
    [...Object.values(pkg.exports).map((e) => `${root}${e.types}`), user],
    options,
    host,
  );
  const problems = ts.getPreEmitDiagnostics(program).map((d) => {
    const text = ts.flattenDiagnosticMessageText(d.messageText, ' ');
    // 'Message<T>', or a path before the name ('"/…/client/process".PostboxProcess'): the name.
    const cls = /class '(?:".*"\.)?(\w+)/.exec(text)?.[1];
    return `${d.file?.fileName.slice(root.length)} TS${d.code}${cls === undefined ? `: ${text}` : ` ${cls}`}`;
  });
  // The library's classes a user gets from a call, never makes: private constructors (an
  // internal one left out altogether would leave a public one of no arguments).
  assert.deepEqual(
    problems,
    [
      'published-types-user.ts TS2673 Message', // its constructor is private
      'published-types-user.ts TS2673 Mailbox',
      'published-types-user.ts TS2675 PostboxProcess', // it cannot be extended
    ],
    'the published declarations type-check (skipLibCheck off), and refuse what only the library does',
  );
});
