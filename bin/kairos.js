#!/usr/bin/env node
// Entry point of the `kairos` command: runs the compiled CLI (npm install / npm ci build it through `prepare`).
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const main = fileURLToPath(new URL('../dist/src/cli/main.js', import.meta.url));
if (!existsSync(main)) {
  process.stderr.write('kairos: not built yet; run `npm run build` in the kairos directory first\n');
  process.exit(1);
}
const cli = await import(main);
await cli.main(process.argv.slice(2));
