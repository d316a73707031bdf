// Debian's headless Chromium, driven by puppeteer-core (its own browser download never runs).

import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer from 'puppeteer-core';

export async function launch() {
  return puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    // A year-sized export keeps a wait pending for many minutes.
    protocolTimeout: 3_600_000,
    userDataDir: mkdtempSync(join(tmpdir(), 'chorus-chromium-')),
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
}

// Every request a page (and its workers) makes, with its body.
export function recordRequests(page, into) {
  page.on('request', (request) => {
    into.push({ url: request.url(), method: request.method(), body: request.postData() ?? '' });
  });
}
