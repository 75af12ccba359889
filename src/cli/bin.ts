/** Process entry of the `kairos` command (bin/kairos.js runs the compiled form). */
import { main } from './main.js';

await main(process.argv.slice(2));
