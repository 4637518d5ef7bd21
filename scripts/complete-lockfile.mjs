#!/usr/bin/env node
// Adds to package-lock.json the optional, platform-specific packages npm leaves out when the
// registry it reaches serves only this machine's platform (as here: other platforms' builds of
// @biomejs/cli-* and @msgpackr-extract/* answer 404). Without them `npm ci` refuses the lockfile
// as out of sync. The entries are what npm writes with a full registry: optional, tagged with
// os/cpu/libc, so no machine installs a build that is not its own. Run after `npm install`.
import { readFileSync, writeFileSync } from 'node:fs';

const path = new URL('../package-lock.json', import.meta.url);
const lock = JSON.parse(readFileSync(path, 'utf8'));
const packages = lock.packages;
let added = 0;
for (const [where, entry] of Object.entries(packages)) {
  for (const [name, range] of Object.entries(entry.optionalDependencies ?? {})) {
    const key = `node_modules/${name}`;
    if (packages[key] !== undefined || packages[`${where}/${key}`] !== undefined) continue;
    const m = /-(android|darwin|freebsd|linux|win32)-(arm64|x64|arm|ia32)(-musl)?$/.exec(name);
    if (m === null) continue;
    packages[key] = {
      version: range.replace(/^[\^~]/, ''),
      cpu: [m[2]],
      license: entry.license,
      optional: true,
      os: [m[1]],
      ...(m[3] ? { libc: ['musl'] } : m[1] === 'linux' ? { libc: ['glibc'] } : {}),
    };
    added++;
  }
}
lock.packages = Object.fromEntries(
  Object.entries(packages).sort(([a], [b]) => (a === '' ? -1 : b === '' ? 1 : a < b ? -1 : a > b ? 1 : 0)),
);
writeFileSync(path, `${JSON.stringify(lock, null, 2)}\n`);
console.log(`complete-lockfile: added ${added} platform-specific optional packages`);
