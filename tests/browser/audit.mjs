// The auditor's page in headless Chromium:  node audit.mjs BASE_URL OUT_DIR
// Opens the newest release; prints JSON with the signature's state, the charts drawn and every
// request made; screenshots go to OUT_DIR.
import { accessibility, launch, recordRequests, smallText } from './chromium.mjs';

const [base, outDir] = process.argv.slice(2);
const requests = [];
const browser = await launch();
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(180_000);
  await page.setViewport({ width: 1280, height: 800 });
  recordRequests(page, requests);
  await page.setBypassCSP(true);
  await page.goto(`${base}/audit.html`);
  // The release drawn whole, its signature checked (which can finish before the drawing).
  await page.waitForSelector('#release[data-shown]', { timeout: 120_000 });
  const out = await page.evaluate(() => ({
    signature: document.querySelector('#signature').dataset.state,
    signature_text: document.querySelector('#signature').textContent,
    demo_banner: !document.querySelector('#demo').hidden,
    bar_charts: document.querySelectorAll('svg.chart:not(.treemap)').length,
    bars: document.querySelectorAll('svg.chart rect.bar').length,
    treemap_cells: document.querySelectorAll('svg.treemap rect.cell').length,
    tree_topics: document.querySelectorAll('#tree li').length,
    privacy_rows: document.querySelectorAll('#privacy tbody tr').length,
    plausibility_rows: document.querySelectorAll('#plausibility tbody tr').length,
    releases: document.querySelectorAll('#releases li').length,
    findings: [...document.querySelectorAll('#findings li')].map((li) => li.textContent),
    fingerprint: document.querySelector('#fingerprint').textContent,
    release_href: document.querySelector('#download-release').getAttribute('href'),
    verify_command: document.querySelector('#trust').textContent,
    map_dots: document.querySelectorAll('svg.map circle').length,
    languages_within: [...document.querySelectorAll('#tree .languages-within')].map((p) => Number(p.dataset.cells)),
    tree_descriptions: [...document.querySelectorAll('#tree li > span.note')].map((s) => s.textContent),
  }));
  out.requests = requests;
  out.accessibility = await accessibility(page);
  await page.screenshot({ path: `${outDir}/audit.png`, fullPage: true });
  await page.setViewport({ width: 390, height: 800 });
  out.narrow_overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  // Turned to a phone's width: the charts are drawn again for it.
  await page.waitForFunction(() =>
    [...document.querySelectorAll('svg.chart')].every((c) => c.getAttribute('width') <= 390),
  );
  out.resized_small_text = await smallText(page);
  await page.screenshot({ path: `${outDir}/audit-narrow.png` });
  // Opened on a phone: the charts are drawn for its width, and no text is under 12 px.
  await page.reload();
  // The release drawn whole, its signature checked (which can finish before the drawing).
  await page.waitForSelector('#release[data-shown]', { timeout: 120_000 });
  out.narrow_small_text = await smallText(page);
  out.narrow_overflow_reloaded = await page.evaluate(
    () => document.documentElement.scrollWidth > window.innerWidth + 1,
  );
  process.stdout.write(`${JSON.stringify(out)}\n`);
} finally {
  await browser.close();
}
