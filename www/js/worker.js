// One of the contributor's Web Workers: loads the pinned model (from Cache Storage after the
// first visit, its SHA-256 checked every time), runs the wasm client on its share of the
// export, and (the first worker) builds the privatized batch. The export's bytes never leave
// the worker; its analyses go to the page as the review rows the contributor sees and, whole, to
// the first worker (which builds the batch); the page receives the batch and the memo as JSON
// text, and only the batch is ever sent.

import { BUNDLE } from '/js/bundle.js';
import { NOTICE, REPLY, REQUEST } from '/js/messages.js';
import init, { Client, redemptionBody } from '/pkg/chorus_client.js';

const CACHE = 'chorus-model-v1';
let client = null;

async function sha256Hex(bytes) {
  const digest = await crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

// One pinned file: from the cache when its bytes still have the pinned hash, else fetched.
async function pinnedFile(pin) {
  const cache = await caches.open(CACHE);
  const cached = await cache.match(pin.url);
  if (cached) {
    const bytes = new Uint8Array(await cached.arrayBuffer());
    if ((await sha256Hex(bytes)) === pin.sha256) return { bytes, from: 'cache' };
    await cache.delete(pin.url);
  }
  const response = await fetch(pin.url);
  if (!response.ok) throw new Error(`the server has no ${pin.file} (${response.status})`);
  const bytes = await download(response, (received, total) =>
    postMessage({ type: NOTICE.DOWNLOAD, file: pin.file, received, total }),
  );
  const hash = await sha256Hex(bytes);
  if (hash !== pin.sha256) {
    throw new Error(
      `${pin.file} does not have the pinned SHA-256 (${hash} instead of ${pin.sha256}); refusing to use it`,
    );
  }
  await cache.put(pin.url, new Response(bytes));
  return { bytes, from: 'network' };
}

// A response's bytes, reporting how many have arrived (and of how many, when the server says).
async function download(response, onProgress) {
  const total = Number(response.headers.get('Content-Length')) || 0;
  const reader = response.body.getReader();
  const chunks = [];
  let received = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    received += value.length;
    onProgress(received, total);
  }
  const bytes = new Uint8Array(received);
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return bytes;
}

async function load({ study }) {
  await init({ module_or_path: BUNDLE });
  const pins = await (await fetch('/api/v1/model')).json();
  const status = (text) => postMessage({ type: NOTICE.STATUS, text });
  const model = await pinnedFile(pins.model);
  const tokenizer = await pinnedFile(pins.tokenizer);
  status('starting the model');
  client = new Client(model.bytes, tokenizer.bytes, study);
  return { model: model.from, privacy: JSON.parse(client.privacy()) };
}

// This worker's share of the export's conversations. The file is read a window at a time
// (FileReaderSync over File.slice): a large export is never held whole.
function analyze({ file, shard, shards }) {
  const reader = new FileReaderSync();
  const readAt = (offset, length) => new Uint8Array(reader.readAsArrayBuffer(file.slice(offset, offset + length)));
  let last = 0;
  const result = client.analyzeFile(
    file.size,
    readAt,
    (read, total, done) => {
      const now = performance.now();
      if (now - last > 100) {
        last = now;
        postMessage({ type: NOTICE.PROGRESS, read, total, done });
      }
    },
    shard,
    shards,
  );
  return JSON.parse(result);
}

const handlers = {
  [REQUEST.LOAD]: load,
  [REQUEST.ANALYZE]: analyze,
  [REQUEST.TAKE]: () => client.takeAnalyses(),
  [REQUEST.ADD]: ({ json }) => client.addAnalyses(json),
  // `batch` and `memo` come back as JSON text and stay text: the page sends and stores these
  // very bytes (a number parsed by JavaScript may not be the number the device drew).
  [REQUEST.REPORT]: ({ memo, excluded, tokens }) =>
    JSON.parse(client.report(memo ?? '', JSON.stringify(excluded), tokens ?? '')),
  [REQUEST.TOKEN_REQUESTS]: ({ key }) => client.tokenRequests(key),
  [REQUEST.REDEMPTION]: ({ pending, invitation }) => redemptionBody(pending, invitation),
  [REQUEST.FINISH_TOKENS]: ({ pending, answer }) => client.finishTokens(pending, answer),
  [REQUEST.COMMIT]: ({ memo, key }) => JSON.parse(client.commit(memo, key)),
};

self.onmessage = async ({ data }) => {
  try {
    const result = await handlers[data.type](data);
    postMessage({ type: REPLY.DONE, id: data.id, result });
  } catch (error) {
    postMessage({ type: REPLY.ERROR, id: data.id, message: String(error?.message ?? error) });
  }
};
