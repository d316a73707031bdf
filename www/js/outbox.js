// What must survive a refresh or a lost connection, in IndexedDB: the memo (this device's
// pseudonym, sample and drawn reports, so that the same batch is re-sent), an invitation and its
// redemption in progress, and the outbox of donations not yet acknowledged. A donation is stored
// before it is first sent and removed only when the server's receipt is stored; retries re-send
// the same batch under the same idempotency key, which the server acknowledges once.

const DB = 'chorus';

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => {
      const db = request.result;
      db.createObjectStore('memo');
      db.createObjectStore('outbox', { keyPath: 'key' });
      db.createObjectStore('receipts', { keyPath: 'key' });
    };
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(store, mode, action) {
  const db = await open();
  return new Promise((resolve, reject) => {
    const tx = db.transaction(store, mode);
    const result = action(tx.objectStore(store));
    tx.oncomplete = () => resolve(result.result);
    tx.onerror = () => reject(tx.error);
  });
}

export const memo = {
  get: (study) => run('memo', 'readonly', (s) => s.get(study)),
  put: (study, value) => run('memo', 'readwrite', (s) => s.put(value, study)),
  delete: (study) => run('memo', 'readwrite', (s) => s.delete(study)),
};

export const outbox = {
  put: (donation) => run('outbox', 'readwrite', (s) => s.put(donation)),
  all: () => run('outbox', 'readonly', (s) => s.getAll()),
  async acknowledge(key, receipt) {
    await run('receipts', 'readwrite', (s) => s.put({ key, receipt, at: new Date().toISOString() }));
    await run('outbox', 'readwrite', (s) => s.delete(key));
  },
  receipts: () => run('receipts', 'readonly', (s) => s.getAll()),
};

// POSTs `body` (JSON text) until the server answers for good: retried with backoff on network
// errors, 429 and 503. Returns the final answer's status and text.
export async function post(url, body, onStatus) {
  for (let attempt = 0; ; attempt++) {
    try {
      const response = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body });
      const text = await response.text();
      if (response.status !== 429 && response.status !== 503) return { ok: response.ok, status: response.status, text };
      onStatus(`the server is busy, retrying (${attempt + 1})`);
    } catch (_error) {
      onStatus(`network error, retrying (${attempt + 1})`);
    }
    await new Promise((resolve) => setTimeout(resolve, Math.min(30000, 500 * 2 ** attempt)));
  }
}

// Sends one donation until the server answers for good; an answer other than a receipt is final
// (the donation stays in the outbox, marked).
export async function send(donation, onStatus) {
  const url = `/api/v1/studies/${encodeURIComponent(donation.study)}/reports`;
  const { ok, status, text } = await post(url, donation.body, onStatus);
  if (ok) {
    const receipt = JSON.parse(text);
    await outbox.acknowledge(donation.key, receipt);
    return receipt;
  }
  await outbox.put({ ...donation, refused: text });
  throw new Error(`the server refused the donation (${status}): ${text}`);
}
