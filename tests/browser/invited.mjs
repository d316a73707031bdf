// A study that admits invited contributors only, on the contributor's page:
//   node invited.mjs BASE_URL STUDY_ID INVITATION_LINK EXPORT OUT_DIR
// Device 1 has no invitation: it analyses its export, and the page refuses to prepare a batch,
// saying why. Device 2 opens the invitation link: the code leaves the address bar; the first
// answer to its redemption is lost (this script forwards the request to the server itself, then
// fails the page's copy and every retry) and the tab is reloaded; on the next attempt the page
// sends its stored redemption again, gets the same signatures, and donates. Prints JSON.
import { launch, recordRequests } from './chromium.mjs';

const [base, studyId, link, exportPath, outDir] = process.argv.slice(2);
const requests = [];
const out = { requests };
const browser = await launch();
const long = { timeout: 600_000 };

async function openPage(context) {
  const page = await context.newPage();
  page.setDefaultTimeout(180_000);
  await page.setViewport({ width: 1280, height: 800 });
  recordRequests(page, requests);
  page.on('console', (m) => m.type() === 'error' && process.stderr.write(`page: ${m.text()}\n`));
  return page;
}

async function analyse(page) {
  await page.waitForSelector('#access[data-access]');
  await (await page.$('#file')).uploadFile(exportPath);
  await page.waitForSelector('#review:not([hidden])', long);
}

try {
  // Device 1: no invitation.
  const uninvited = await openPage(browser);
  await uninvited.goto(`${base}/contribute.html?study=${encodeURIComponent(studyId)}`);
  await analyse(uninvited);
  out.uninvited_access = await uninvited.$eval('#access', (e) => e.dataset.access);
  await uninvited.click('#prepare');
  await uninvited.waitForSelector('#error:not([hidden])');
  out.uninvited_error = await uninvited.$eval('#error', (e) => e.textContent);
  out.uninvited_payload_hidden = await uninvited.$eval('#payload-section', (e) => e.hidden);
  await uninvited.close();

  // Device 2: the invitation link, and a redemption whose answer is lost.
  const context = await browser.createBrowserContext();
  const page = await openPage(context);
  await page.setRequestInterception(true);
  let blocking = true;
  out.redemptions = [];
  page.on('request', async (request) => {
    if (request.isInterceptResolutionHandled()) return;
    if (request.method() === 'POST' && request.url().endsWith('/tokens')) {
      out.redemptions.push(request.postData());
      if (blocking) {
        if (out.redemptions.length === 1) {
          const answer = await fetch(request.url(), {
            method: 'POST',
            headers: { 'Content-Type': 'application/json' },
            body: request.postData(),
          });
          out.forwarded_status = answer.status;
        }
        return request.abort('connectionreset');
      }
    }
    request.continue();
  });
  await page.goto(link);
  await analyse(page);
  out.address_after_link = page.url();
  out.invited_access = await page.$eval('#access', (e) => e.dataset.access);
  await page.click('#prepare');
  await page.waitForFunction(() => document.querySelector('#redeem-status').textContent.includes('retrying'), long);
  // The tab closes while the page waits to try again.
  blocking = false;
  await page.reload();
  await analyse(page);
  await page.click('#prepare');
  await page.waitForSelector('#payload-section:not([hidden])', long);
  out.payload = JSON.parse(await page.$eval('#payload', (e) => e.textContent));
  await page.screenshot({ path: `${outDir}/contribute-invited.png`, fullPage: false });
  await page.click('#donate');
  await page.waitForSelector('#receipt[data-state=stored]', long);
  out.receipt = await page.$eval('#receipt', (e) => e.textContent);
  out.stored_after = await page.evaluate(
    () =>
      new Promise((resolve) => {
        const open = indexedDB.open('chorus');
        open.onsuccess = () => {
          const keys = open.result.transaction('memo').objectStore('memo').getAllKeys();
          keys.onsuccess = () => resolve(keys.result);
        };
      }),
  );
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await browser.close();
}
