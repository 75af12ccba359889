/** Writes schemas/avro/*.avsc and schemas/json/*.schema.json from schemas/contract.ts. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedSchemaFiles } from '../src/serde/schema-files.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas');
for (const [rel, content] of generatedSchemaFiles()) {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  console.log(`wrote schemas/${rel}`);
}
