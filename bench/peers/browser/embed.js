// Runs one side of the in-browser embedding pair: `?side=chorus|transformers&workers=N`.
// Each worker loads its model first; then all start together and embed every N-th text. The
// time runs from the start signal to the last worker's last vector (model loading excluded).
const params = new URLSearchParams(location.search);
const side = params.get('side');
const workers = Number(params.get('workers') ?? 1);

async function run() {
  const texts = await (await fetch('/texts.json')).json();
  const pool = [...Array(workers).keys()].map(() => new Worker('/bench/embed_worker.js', { type: 'module' }));
  const ask = (worker, message) =>
    new Promise((resolve, reject) => {
      worker.onmessage = (event) => (event.data.error ? reject(new Error(event.data.error)) : resolve(event.data));
      worker.postMessage(message);
    });
  await Promise.all(pool.map((worker) => ask(worker, { type: 'load', side })));
  const started = performance.now();
  const shares = await Promise.all(
    pool.map((worker, w) => ask(worker, { type: 'embed', texts: texts.filter((_, i) => i % workers === w) })),
  );
  const ms = performance.now() - started;
  const vectors = texts.map((_, i) => shares[i % workers].vectors[Math.floor(i / workers)]);
  for (const worker of pool) worker.terminate();
  return { texts: texts.length, workers, ms_per_text: ms / texts.length, vectors };
}

window.benchResult = run().catch((e) => ({ error: String(e?.stack || e) }));
