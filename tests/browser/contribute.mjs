// The contributor's page in headless Chromium:
//   node contribute.mjs BASE_URL STUDY_ID EXPORT WRONG_FILE OUT_DIR
// Device 1: a wrong file shows an error; the export is analysed, one row excluded, the payload
// shown, declined ("Don't donate": nothing sent), shown again and donated, receipt; then a
// return visit driven by the keyboard alone, with the model from the browser's cache. Device 2 (a fresh profile): the first POST fails (network down),
// the page is reloaded, and the queued donation is sent from IndexedDB. Prints JSON with every
// request made, the receipts and timings; screenshots go to OUT_DIR.
import { accessibility, launch, recordRequests, smallText } from './chromium.mjs';

const [base, studyId, exportPath, wrongPath, outDir] = process.argv.slice(2);
const url = `${base}/contribute.html?study=${encodeURIComponent(studyId)}`;
const requests = [];
const out = { requests };
const browser = await launch();
const long = { timeout: 600_000 };

async function analyse(page, file) {
  const input = await page.$('#file');
  await input.uploadFile(file);
}

try {
  // Device 1.
  const page = await browser.newPage();
  // Generous: a loaded machine (CI) may take a while to start the model in two workers.
  page.setDefaultTimeout(180_000);
  await page.setViewport({ width: 1280, height: 800 });
  recordRequests(page, requests);
  page.on('console', (m) => m.type() === 'error' && process.stderr.write(`page: ${m.text()}\n`));
  await page.setBypassCSP(true);
  await page.goto(url);
  await page.waitForFunction(() => document.querySelector('#privacy').textContent.includes('ε ='));
  await analyse(page, wrongPath);
  await page.waitForSelector('#error:not([hidden])', long);
  out.wrong_file_error = await page.$eval('#error', (e) => e.textContent);
  const started = Date.now();
  await analyse(page, exportPath);
  await page.waitForSelector('#review:not([hidden])', long);
  out.analysis_ms = Date.now() - started;
  out.rows = await page.$$eval('#conversations tbody tr', (rows) => rows.length);
  // Sorting and filtering: newest first puts the days in order; a category filter shows that
  // category only, and "leave out" then leaves out exactly those; the filter cleared, all
  // are included again.
  const days = () => page.$$eval('#conversations tbody .preview', (s) => s.map((e) => e.textContent.slice(0, 10)));
  await page.select('#sort', 'newest');
  out.days_newest_first = await days();
  await page.select('#sort', 'export');
  const category = await page.$eval('#category-filter', (s) => s.options[1].value);
  await page.select('#category-filter', category);
  out.filtered = await page.$$eval('#conversations tbody tr', (rows) =>
    rows.map((r) => r.querySelector('[data-label=Category]').textContent),
  );
  out.filter_option = await page.$eval('#category-filter', (s) => s.options[1].textContent);
  await page.click('#select-none');
  out.filtered_left_out = await page.$eval('#review-count', (e) => e.textContent);
  await page.click('#select-all');
  await page.select('#category-filter', '');
  out.after_filter = await page.$eval('#review-count', (e) => e.textContent);
  out.excluded = await page.$eval('#conversations tbody input[type=checkbox]', (box) => {
    box.click();
    return box.dataset.id;
  });
  await page.click('#prepare');
  await page.waitForSelector('#payload-section:not([hidden])');
  out.payload = JSON.parse(await page.$eval('#payload', (e) => e.textContent));
  out.sampled = JSON.parse(await page.$eval('#payload-section', (e) => e.dataset.sampled));
  out.cost = await page.$eval('#payload-cost', (e) => e.textContent);
  await page.screenshot({ path: `${outDir}/contribute-review.png`, fullPage: false });
  out.accessibility = await accessibility(page);
  // "Don't donate": nothing is sent and neither button stays live; then back, and donate.
  await page.click('#decline');
  await page.waitForSelector('#decision:not([hidden])');
  out.declined = await page.evaluate(() => ({
    text: document.querySelector('#decision').textContent,
    donate_disabled: document.querySelector('#donate').disabled,
    decline_disabled: document.querySelector('#decline').disabled,
  }));
  out.declined.reports_posted = requests.filter((r) => r.method === 'POST' && r.url.includes('/reports')).length;
  await page.click('#reconsider');
  await page.waitForSelector('#payload-section', { hidden: true });
  await page.click('#prepare');
  await page.waitForSelector('#payload-section:not([hidden])');
  out.payload_again = JSON.parse(await page.$eval('#payload', (e) => e.textContent));
  await page.click('#donate');
  await page.waitForSelector('#receipt[data-state=stored]', long);
  out.receipt = await page.$eval('#receipt', (e) => e.textContent);
  await page.screenshot({ path: `${outDir}/contribute-receipt.png`, fullPage: true });
  // A return visit: the pinned model comes from Cache Storage (its hash checked), not the network;
  // and the whole flow works from the keyboard alone.
  const modelFetches = () => requests.filter((r) => r.url.endsWith('/api/v1/model/model.onnx')).length;
  out.model_fetches_first_visit = modelFetches();
  await page.reload();
  await page.waitForFunction(() => document.querySelector('#privacy').textContent.includes('ε ='));
  await page.focus('#file');
  // Intercepting the file chooser is switched on asynchronously: let it settle before Enter.
  const choosing = page.waitForFileChooser();
  await new Promise((resolve) => setTimeout(resolve, 500));
  await page.keyboard.press('Enter');
  await (await choosing).accept([exportPath]);
  await page.waitForSelector('#review:not([hidden])', long);
  out.model_fetches_after_return = modelFetches() - out.model_fetches_first_visit;
  await page.focus('#select-none');
  await page.keyboard.press('Tab'); // the first row's checkbox
  await page.keyboard.press('Space');
  out.keyboard_excluded = await page.$eval('#review-count', (e) => e.textContent);
  await page.focus('#prepare');
  await page.keyboard.press('Enter');
  await page.waitForSelector('#payload-section:not([hidden])');
  out.keyboard_payload_reports = JSON.parse(await page.$eval('#payload', (e) => e.textContent)).reports.length;
  out.keyboard_cost = await page.$eval('#payload-cost', (e) => e.textContent);
  // Narrow screen: the page still lays out (no horizontal overflow of the body).
  await page.setViewport({ width: 390, height: 800 });
  out.narrow_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  await page.screenshot({ path: `${outDir}/contribute-narrow.png` });
  out.narrow_small_text = await smallText(page);

  // Device 2: the network fails during the donation, then the tab is reloaded.
  const context = await browser.createBrowserContext();
  const second = await context.newPage();
  second.setDefaultTimeout(180_000);
  await second.setViewport({ width: 1280, height: 800 });
  recordRequests(second, requests);
  await second.setRequestInterception(true);
  let blocked = 0;
  second.on('request', (request) => {
    if (request.isInterceptResolutionHandled()) return;
    if (request.method() === 'POST' && request.url().includes('/reports') && blocked < 2) {
      blocked++;
      return request.abort('internetdisconnected');
    }
    // A slow server: the study arrives after the export is chosen.
    if (request.url().includes('/api/v1/studies/')) return setTimeout(() => request.continue(), 1500);
    request.continue();
  });
  // The export is chosen at once, while the workers are still loading the model: the analysis
  // waits for them.
  await second.goto(url);
  await analyse(second, exportPath);
  await second.waitForSelector('#review:not([hidden])', long);
  await second.click('#prepare');
  await second.waitForSelector('#payload-section:not([hidden])');
  out.second_payload = JSON.parse(await second.$eval('#payload', (e) => e.textContent));
  await second.click('#donate');
  await second.waitForFunction(() => document.querySelector('#receipt').textContent.includes('retrying'), long);
  out.blocked = blocked;
  await second.reload();
  await second.waitForSelector('#receipt[data-state=stored]', long);
  out.second_receipt = await second.$eval('#receipt', (e) => e.textContent);
  // Withdrawal: the receipt's code deletes this donation on the server; the same code again
  // finds it withdrawn before; a made-up code finds nothing.
  out.steward = await second.$eval('#steward', (e) => e.textContent);
  out.withdrawal_code = await second.$eval('#withdraw-key', (e) => e.textContent);
  await second.click('#withdraw-now');
  await second.waitForSelector('#withdraw-result[data-state=withdrawn]', long);
  out.withdrawn = await second.$eval('#withdraw-result', (e) => e.textContent);
  await second.$eval('#withdraw-input', (e) => {
    e.value = '';
  });
  await second.type('#withdraw-input', out.withdrawal_code);
  await second.click('#withdraw');
  await second.waitForFunction(() => document.querySelector('#withdraw-result').textContent.includes('before'), long);
  out.withdrawn_again = await second.$eval('#withdraw-result', (e) => e.textContent);
  const refused = async (code) => {
    await second.$eval('#withdraw-result', (e) => delete e.dataset.state);
    await second.$eval('#withdraw-input', (e, c) => (e.value = c), code);
    await second.click('#withdraw');
    await second.waitForSelector('#withdraw-result[data-state=refused]', long);
    return second.$eval('#withdraw-result', (e) => e.textContent);
  };
  out.withdraw_unknown = await refused('0123456789abcdef0123456789abcdef');
  out.withdraw_malformed = await refused('no-such-withdrawal-code');
  // Once more: nothing left to send, nothing sent twice.
  await second.reload();
  await new Promise((r) => setTimeout(r, 1500));
  out.outbox_after = await second.evaluate(
    () =>
      new Promise((resolve) => {
        const open = indexedDB.open('chorus');
        open.onsuccess = () => {
          const get = open.result.transaction('outbox').objectStore('outbox').count();
          get.onsuccess = () => resolve(get.result);
        };
      }),
  );
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await browser.close();
}
