// Runs the wasm build of the client pipeline under Node on one export file and prints one JSON
// object per conversation, like `chorus analyze --embeddings` does natively.
//
//   node tests/wasm/analyze.mjs MODEL_ONNX TOKENIZER_JSON COMPILED_STUDY_JSON EXPORT [--time]
//
// With --time, prints instead {"conversations": N, "ms": total analysis time}.
import { readFileSync } from 'node:fs';
import { initSync, Client } from '../../www/pkg/chorus_client.js';

const [model, tokenizer, study, exportPath, flag] = process.argv.slice(2);
initSync({ module: readFileSync(new URL('../../www/pkg/chorus_client_bg.wasm', import.meta.url)) });
const client = new Client(readFileSync(model), readFileSync(tokenizer), readFileSync(study, 'utf8'));
const bytes = readFileSync(exportPath);
const started = performance.now();
const result = JSON.parse(client.analyze(bytes, flag !== '--time', null));
const ms = performance.now() - started;
if (flag === '--time') {
  process.stdout.write(JSON.stringify({ conversations: result.conversations.length, ms }) + '\n');
} else {
  for (const c of result.conversations) process.stdout.write(JSON.stringify(c) + '\n');
}
