/**
 * The generated schema files (schemas/avro/*.avsc, schemas/json/*.schema.json), derived from schemas/contract.ts.
 * `npm run schemas:generate` writes them; test/serde/schemas.test.ts fails when the files on disk drift.
 */
import { AVRO_NAMESPACE, TOPICS, type TopicName } from '../../schemas/contract.js';
import { avroSchemaOf } from './avro-from-typebox.js';

export function generatedSchemaFiles(): Map<string, string> {
  const files = new Map<string, string>();
  for (const [topic, spec] of Object.entries(TOPICS) as [TopicName, (typeof TOPICS)[TopicName]][]) {
    const avro = avroSchemaOf(spec.schema, AVRO_NAMESPACE);
    files.set(`avro/${topic}.avsc`, JSON.stringify(avro, null, 2) + '\n');
    const json = {
      $schema: 'http://json-schema.org/draft-07/schema#',
      title: topic,
      'x-kafka-key': spec.keyField,
      'x-event-time': spec.timestampField,
      'x-tombstones': spec.tombstones,
      ...spec.schema,
    };
    files.set(`json/${topic}.schema.json`, JSON.stringify(json, null, 2) + '\n');
  }
  return files;
}
