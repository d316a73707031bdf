// Debian's headless Chromium, driven by puppeteer-core (its own browser download never runs).

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

// The browser, with a profile of its own that is removed when it closes.
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), 'chorus-chromium-'));
  const browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    // A year-sized export keeps a wait pending for many minutes.
    protocolTimeout: 3_600_000,
    userDataDir: profile,
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
  const close = browser.close.bind(browser);
  browser.close = async () => {
    await close();
    rmSync(profile, { recursive: true, force: true });
  };
  return browser;
}

// Every request a page (and its workers) makes, with its body.
export function recordRequests(page, into) {
  page.on('request', (request) => {
    into.push({ url: request.url(), method: request.method(), body: request.postData() ?? '' });
  });
}

// The serious and critical accessibility violations axe-core finds on the page as it stands:
// [{id, impact, help, nodes}]. The page must have been opened after `page.setBypassCSP(true)`
// (axe is injected as an inline script, which the pages' Content-Security-Policy forbids).
export async function accessibility(page) {
  await page.addScriptTag({ path: new URL('./node_modules/axe-core/axe.min.js', import.meta.url).pathname });
  return page.evaluate(async () => {
    // axe: the script injected above.
    const result = await window.axe.run(document, { resultTypes: ['violations'] });
    return result.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => ({ id: v.id, impact: v.impact, help: v.help, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
}

// Text on the page rendered smaller than 12 px (every <details> opened first, so that folded text
// counts too): [{text, px}]. An SVG text's size is its font size times the drawing's scale.
export async function smallText(page) {
  return page.evaluate(() => {
    for (const details of document.querySelectorAll('details')) details.open = true;
    const small = [];
    const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
    for (let text = walker.nextNode(); text; text = walker.nextNode()) {
      const element = text.parentElement;
      if (!text.textContent.trim() || !element.checkVisibility()) continue;
      if (['TITLE', 'SCRIPT', 'STYLE'].includes(element.tagName.toUpperCase())) continue;
      let px = Number.parseFloat(getComputedStyle(element).fontSize);
      if (element instanceof SVGElement) px *= element.getScreenCTM()?.a ?? 0;
      if (px < 11.95) small.push({ text: text.textContent.trim().slice(0, 60), px: Math.round(px * 10) / 10 });
    }
    return small;
  });
}
