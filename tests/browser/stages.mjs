// Every stage of the two pages as a person sees it, at a desk's width and a phone's:
//   node stages.mjs BASE_URL STUDY_ID EXPORT OUT_DIR
// The contributor's page (1 the study, 2 analysing, 3 the review, 4 what will be sent, 5 the
// receipt; each a fresh device) and the auditor's page (the whole page), saved as
// OUT_DIR/NAME-WIDTH.png. Prints JSON with the files written.
import { launch } from './chromium.mjs';

const [base, studyId, exportPath, outDir] = process.argv.slice(2);
const sizes = [
  { width: 1280, height: 900 },
  { width: 390, height: 844, isMobile: true, hasTouch: true, deviceScaleFactor: 1 },
];
const long = { timeout: 600_000 };
const written = [];
const browser = await launch();

async function shot(page, name, width, selector, fullPage = false) {
  if (selector) await page.$eval(selector, (e) => e.scrollIntoView({ block: 'start' }));
  const path = `${outDir}/${name}-${width}.png`;
  await page.screenshot({ path, fullPage });
  written.push(path);
}

try {
  for (const size of sizes) {
    const context = await browser.createBrowserContext();
    const page = await context.newPage();
    page.setDefaultTimeout(180_000);
    await page.setViewport(size);
    await page.goto(`${base}/contribute.html?study=${encodeURIComponent(studyId)}`);
    await page.waitForFunction(() => document.querySelector('#privacy').textContent.includes('ε ='));
    await shot(page, 'contribute-1-study', size.width, null, true);
    await (await page.$('#file')).uploadFile(exportPath);
    await page.waitForSelector('#progress-box:not([hidden])');
    await new Promise((resolve) => setTimeout(resolve, 4000));
    await shot(page, 'contribute-2-analysing', size.width, '#choose-heading');
    await page.waitForSelector('#review:not([hidden])', long);
    await shot(page, 'contribute-3-review', size.width, '#review');
    await page.click('#prepare');
    await page.waitForSelector('#payload-section:not([hidden])');
    await shot(page, 'contribute-4-payload', size.width, '#payload-section');
    await page.click('#donate');
    await page.waitForSelector('#receipt[data-state=stored]', long);
    await shot(page, 'contribute-5-receipt', size.width, '#receipt-section');
    await page.goto(`${base}/audit.html`);
    // The release drawn whole, its signature checked (which can finish before the drawing).
    await page.waitForSelector('#release[data-shown]', { timeout: 120_000 });
    await shot(page, 'audit', size.width, null, true);
    await context.close();
  }
  process.stdout.write(`${JSON.stringify({ written })}\n`);
} finally {
  await browser.close();
}
