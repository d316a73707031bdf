// The contributor's page analysing one export in headless Chromium, timed, with the peak
// memory of every Chromium process sampled meanwhile:
//   node bench.mjs BASE_URL EXPORT [RUNS]
// Prints JSON: seconds per run (model already cached after the first), workers, conversations,
// peak RSS in MB (all processes of this browser summed).

import { readdirSync, readFileSync } from 'node:fs';
import { launch } from './chromium.mjs';

const [base, exportPath, runs = '2'] = process.argv.slice(2);
const browser = await launch();
const marker = browser.process().spawnargs.find((a) => a.startsWith('--user-data-dir'));

function rssMb() {
  let kb = 0;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(marker.split('=')[1])) continue;
      const line = readFileSync(`/proc/${pid}/status`, 'utf8')
        .split('\n')
        .find((l) => l.startsWith('VmRSS:'));
      kb += Number(line?.split(/\s+/)[1] ?? 0);
    } catch {
      /* the process ended */
    }
  }
  return kb / 1024;
}

let peak = 0;
const sampler = setInterval(() => (peak = Math.max(peak, rssMb())), 200);
const out = { seconds: [], runs: Number(runs) };
try {
  for (let i = 0; i < out.runs; i++) {
    const page = await browser.newPage();
    await page.setViewport({ width: 1280, height: 800 });
    await page.goto(`${base}/contribute.html`);
    await page.waitForFunction(() => document.querySelector('#privacy').textContent.includes('ε ='));
    const input = await page.$('#file');
    await input.uploadFile(exportPath);
    await page.waitForSelector('#review:not([hidden])', { timeout: 900_000 });
    out.seconds.push(Number(await page.$eval('#progress-text', (e) => e.dataset.seconds)));
    out.conversations = Number(await page.$eval('#progress-text', (e) => e.dataset.conversations));
    out.rows_rendered = await page.$$eval('#conversations tbody tr', (rows) => rows.length);
    out.workers = await page.evaluate(() => Math.min(2, navigator.hardwareConcurrency || 1));
    await page.close();
  }
} finally {
  clearInterval(sampler);
  out.peak_rss_mb = Math.round(peak);
  await browser.close();
}
process.stdout.write(`${JSON.stringify(out)}\n`);
