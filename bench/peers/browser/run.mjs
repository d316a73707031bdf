// One measurement of the in-browser embedding pair in Debian's headless Chromium:
//
//   node run.mjs chorus|transformers WORKERS TEXTS.json MODEL_DIR WWW_DIR [VECTORS.json]
//
// Serves, from one local origin, the bench page, Chorus's wasm bundle (WWW_DIR/pkg), the
// transformers.js and onnxruntime-web files (node_modules next to this script's package.json,
// installed by bench/run.py) and the model files of MODEL_DIR (model.onnx, tokenizer.json) with
// the model's public configuration. Prints {"texts", "workers", "ms_per_text"}; any request
// that leaves the local origin fails the run.

import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, extname, join, normalize } from 'node:path';

const [side, workers, textsFile, modelDir, wwwDir, vectorsOut] = process.argv.slice(2);
const peers = process.env.CHORUS_BENCH_NODE_MODULES;
const require = createRequire(join(peers, 'package.json'));
const puppeteer = (await import(require.resolve('puppeteer-core'))).default;
const here = dirname(new URL(import.meta.url).pathname);
const transformersDist = join(peers, 'node_modules', '@huggingface', 'transformers', 'dist');
const ortDist = join(peers, 'node_modules', 'onnxruntime-web', 'dist');

// all-MiniLM-L6-v2's public configuration, and its tokenizer without the file's own
// truncation and padding: the worker truncates as Chorus does (64 tokens).
const tokenizer = JSON.parse(readFileSync(join(modelDir, 'tokenizer.json'), 'utf8'));
tokenizer.truncation = null;
tokenizer.padding = null;
const generated = {
  '/models/minilm/tokenizer.json': JSON.stringify(tokenizer),
  '/models/minilm/config.json': JSON.stringify({
    model_type: 'bert',
    architectures: ['BertModel'],
    hidden_size: 384,
    num_attention_heads: 12,
    num_hidden_layers: 6,
    intermediate_size: 1536,
    vocab_size: 30522,
    max_position_embeddings: 512,
    type_vocab_size: 2,
  }),
  '/models/minilm/tokenizer_config.json': JSON.stringify({
    tokenizer_class: 'BertTokenizer',
    do_lower_case: true,
    model_max_length: 64,
    clean_up_tokenization_spaces: true,
  }),
};
const routes = [
  ['/bench/', here],
  ['/pkg/', join(wwwDir, 'pkg')],
  ['/js/', join(wwwDir, 'js')],
  ['/tjs/', transformersDist],
  ['/ort/', ortDist],
  ['/models/minilm/onnx/', modelDir],
  ['/chorus-model/', modelDir],
];
const types = {
  '.html': 'text/html',
  '.js': 'text/javascript',
  '.mjs': 'text/javascript',
  '.wasm': 'application/wasm',
  '.json': 'application/json',
};

const server = http.createServer((request, response) => {
  const path = normalize(decodeURIComponent(new URL(request.url, 'http://x').pathname));
  let body = null;
  if (generated[path]) body = generated[path];
  else if (path === '/texts.json') body = readFileSync(textsFile);
  else {
    for (const [prefix, dir] of routes) {
      const file = join(dir, path.slice(prefix.length));
      if (path.startsWith(prefix) && existsSync(file) && !file.endsWith('/')) {
        body = readFileSync(file);
        break;
      }
    }
  }
  if (body === null) {
    response.writeHead(404).end();
    return;
  }
  response.writeHead(200, { 'Content-Type': types[extname(path)] ?? 'application/octet-stream' }).end(body);
});
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const origin = `http://127.0.0.1:${server.address().port}`;

const browser = await puppeteer.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  protocolTimeout: 3_600_000,
  userDataDir: mkdtempSync(join(tmpdir(), 'chorus-bench-chromium-')),
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
    '--disable-dev-shm-usage',
  ],
});
try {
  const page = await browser.newPage();
  const elsewhere = [];
  const missing = [];
  page.on('request', (r) => {
    if (!r.url().startsWith(origin) && !r.url().startsWith('data:') && !r.url().startsWith('blob:'))
      elsewhere.push(r.url());
  });
  page.on('response', (r) => {
    if (r.status() === 404) missing.push(r.url());
  });
  page.on('requestfailed', (r) => missing.push(r.url()));
  page.on('console', (m) => {
    if (m.type() === 'error') console.error('page:', m.text());
  });
  await page.goto(`${origin}/bench/embed.html?side=${side}&workers=${workers}`);
  const result = await page.evaluate(() => window.benchResult);
  if (result.error) throw new Error(`${side}: ${result.error}\nnot found: ${missing.join(', ')}`);
  if (elsewhere.length) throw new Error(`requests left the local origin: ${elsewhere.join(', ')}`);
  if (vectorsOut) writeFileSync(vectorsOut, JSON.stringify(result.vectors));
  console.log(
    JSON.stringify({
      texts: result.texts,
      workers: result.workers,
      ms_per_text: Number(result.ms_per_text.toFixed(3)),
    }),
  );
} finally {
  await browser.close();
  server.close();
}
