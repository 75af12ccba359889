/** Process entry of the `kairos` command (bin/kairos.js runs the compiled form). */
import { run } from './main.js';

process.exitCode = await run(process.argv.slice(2));
