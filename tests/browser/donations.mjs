// Many devices donating through the real contributor's page, one conversation each:
//   node donations.mjs BASE_URL STUDY_ID EXPORT COUNT
// The export is analysed once; then, COUNT times, every row is unticked but one, the payload is
// shown, the donation made and its receipt awaited, and the device's memo forgotten (the next
// donation is a new device). Prints JSON: for each donation the conversation the page says it
// reported and the pseudonym of the batch it showed, and every request's body.
import { launch, recordRequests } from './chromium.mjs';

const [base, studyId, exportPath, count] = process.argv.slice(2);
const url = `${base}/contribute.html?study=${encodeURIComponent(studyId)}`;
const requests = [];
const browser = await launch();
const long = { timeout: 600_000 };

// A new device: the memo (reports, pseudonyms, ledger) is gone.
// An evaluation has no timeout of its own: a store that never answers fails the run instead of
// hanging it.
const forgetDevice = () =>
  new Promise((resolve, reject) => {
    setTimeout(() => reject(new Error('IndexedDB did not answer within 60 s')), 60_000);
    const open = indexedDB.open('chorus');
    open.onerror = () => reject(open.error);
    open.onblocked = () => reject(new Error('IndexedDB is blocked'));
    open.onsuccess = () => {
      const tx = open.result.transaction('memo', 'readwrite');
      tx.objectStore('memo').delete('device');
      tx.oncomplete = () => resolve();
      tx.onerror = () => reject(tx.error);
    };
  });

try {
  const page = await browser.newPage();
  page.setDefaultTimeout(180_000);
  recordRequests(page, requests);
  page.on('console', (m) => m.type() === 'error' && process.stderr.write(`page: ${m.text()}\n`));
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector('#privacy').textContent.includes('ε ='));
  await (await page.$('#file')).uploadFile(exportPath);
  await page.waitForSelector('#review:not([hidden])', long);
  const ids = await page.$$eval('#conversations tbody input[type=checkbox]', (boxes) => boxes.map((b) => b.dataset.id));
  const donations = [];
  for (const id of ids.slice(0, Number(count))) {
    await page.click('#select-none');
    const nothing = await page.$eval('#prepare', (b) => ({ disabled: b.disabled, text: b.textContent }));
    await page.click(`#conversations tbody input[data-id="${id}"]`);
    await page.click('#prepare');
    await page.waitForSelector('#payload-section:not([hidden]), #error:not([hidden])');
    const error = await page.$eval('#error', (e) => (e.hidden ? '' : e.textContent));
    if (error) throw new Error(`the page refused to prepare conversation ${id}: ${error}`);
    const sampled = JSON.parse(await page.$eval('#payload-section', (e) => e.dataset.sampled));
    const shown = JSON.parse(await page.$eval('#payload', (e) => e.textContent));
    await page.click('#donate');
    await page.waitForSelector('#receipt[data-state=stored]', long);
    await page.evaluate(forgetDevice);
    donations.push({ id, sampled, contributor: shown.contributor, nothing });
  }
  process.stdout.write(`${JSON.stringify({ donations, requests })}\n`);
} finally {
  await browser.close();
}
