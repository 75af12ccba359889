/** Writes schemas/avro/*.avsc, schemas/json/*.schema.json and schemas/bigquery/*.json from schemas/contract.ts. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generatedSchemaFiles } from '../src/serde/schema-files.js';
import { generatedBigQueryFiles } from '../src/warehouse/tables.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', 'schemas');
for (const [rel, content] of [...generatedSchemaFiles(), ...generatedBigQueryFiles()]) {
  const path = join(root, rel);
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, content);
  console.log(`wrote schemas/${rel}`);
}
