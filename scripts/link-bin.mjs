#!/usr/bin/env node
// Links the package's own `kairos` bin into node_modules/.bin (run by `prepare`, i.e. by npm ci / npm install
// in a checkout), so `npx kairos …` runs this checkout's command with any npm version, offline, without
// `npm link`. Does nothing where there is no node_modules (an installed package gets its bin from npm).
import { existsSync, lstatSync, mkdirSync, symlinkSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const modules = join(root, 'node_modules');
if (existsSync(modules)) {
  const bin = join(modules, '.bin');
  mkdirSync(bin, { recursive: true });
  const link = join(bin, 'kairos');
  if (existsSync(link) || lstatSync(link, { throwIfNoEntry: false })) unlinkSync(link);
  symlinkSync(join('..', '..', 'bin', 'kairos.js'), link);
}
