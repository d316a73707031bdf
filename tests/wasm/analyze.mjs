// Runs the wasm build of the client pipeline under Node on one export file.
//
//   node tests/wasm/analyze.mjs MODEL_ONNX TOKENIZER_JSON COMPILED_STUDY_JSON EXPORT [MODE]
//
// MODE (default): one JSON object per conversation, like `chorus analyze --embeddings`.
// --time: {"conversations": N, "ms": total analysis time} instead.
// --report: the batch the browser would send, built twice from the memo the first call
//   returned: {"batch": ..., "again": ..., "privacy": ...}.
// --embed-texts: EXPORT is a JSON array of texts; prints their vectors from `TextEmbedder`
//   (the embedder alone, as the browser benchmark in bench/ runs it) as one JSON array.
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { initSync, Client, TextEmbedder } from '../../www/pkg/chorus_client.js';

// CHORUS_WASM picks the bundle (default: the relaxed-SIMD one, which Node 20 compiles once its
// V8 flag is on; the simd128 one is `chorus_client_simd128_bg.wasm`).
v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
const bundle = process.env.CHORUS_WASM ?? 'chorus_client_bg.wasm';

// Browsers and Web Workers define `self`, through which the client reaches crypto.getRandomValues
// for its secure noise; Node has the same Web Crypto API but no `self`.
globalThis.self ??= globalThis;

const [model, tokenizer, study, exportPath, mode] = process.argv.slice(2);
initSync({ module: readFileSync(new URL(`../../www/pkg/${bundle}`, import.meta.url)) });
if (mode === '--embed-texts') {
  // Written once, without process.exit (which would cut a piped stdout short).
  const embedder = new TextEmbedder(readFileSync(model), readFileSync(tokenizer));
  const texts = JSON.parse(readFileSync(exportPath, 'utf8'));
  process.stdout.write(JSON.stringify(texts.map((t) => Array.from(embedder.embed(t)))) + '\n');
} else {
  const client = new Client(readFileSync(model), readFileSync(tokenizer), readFileSync(study, 'utf8'));
  const bytes = readFileSync(exportPath);
  const started = performance.now();
  const result = JSON.parse(client.analyze(bytes, mode === undefined, null));
  const ms = performance.now() - started;
  if (mode === '--time') {
    process.stdout.write(JSON.stringify({ conversations: result.conversations.length, ms }) + '\n');
  } else if (mode === '--report') {
    // The page's calls in order: show the payload twice, untick the reported conversation and
    // show it again, donate (commit), then try to untick the conversation that was sent; and
    // a device with every conversation unticked.
    const refusal = (call) => {
      try {
        call();
        return null;
      } catch (error) {
        return String(error?.message ?? error);
      }
    };
    const first = JSON.parse(client.report('', '[]', ''));
    const again = JSON.parse(client.report(first.memo, '[]', ''));
    const other = JSON.parse(client.report(again.memo, JSON.stringify(first.sampled), ''));
    const committed = JSON.parse(client.commit(other.memo, JSON.parse(other.batch).idempotency_key));
    const afterSending = refusal(() => client.report(committed.memo, JSON.stringify(other.sampled), ''));
    const none = refusal(() => client.report('', JSON.stringify(result.conversations.map((c) => c.id)), ''));
    process.stdout.write(JSON.stringify({
      batch: first.batch, again: again.batch, other: other.batch, sampled: first.sampled, other_sampled: other.sampled,
      cost: first.cost, spend: committed.spend, after_sending: afterSending, none, privacy: JSON.parse(client.privacy()),
    }) + '\n');
  } else {
    for (const c of result.conversations) process.stdout.write(JSON.stringify(c) + '\n');
  }
}
