// Helpers of the page tests (page, page_call, page_auth .test.mjs): one
// headless Chromium per test file, launched by usePageBrowser() before its
// tests and closed after them, and a signed-in page of a server in a fresh
// context (no shared state) per page.
import { before, after } from 'node:test';
import assert from 'node:assert/strict';
import { devCerts, launchChromium, PAGE_PATH } from './lib.mjs';

export let browser, certs;

// The browser for the tests of the calling file; with tls, trusting a fresh
// development CA's server key (certs: its files). Only the files that
// need one make the CA: it costs a second or so.
export function usePageBrowser({ tls = false } = {}) {
  before(async () => {
    certs = tls ? devCerts() : null;
    browser = await launchChromium(certs?.spki);
  });
  after(async () => { await browser?.close(); });
}

// A page of the server at base, signed in as name (synthetic media when asked).
// token: the access token (--auth-token), remembered in the tab when asked;
// watch(context) sees the context before the page loads.
export async function openPage(base, name, { synthetic = false, autoAnswer = false, token, remember = false, watch } = {}) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  watch?.(context);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.errors = errors;
  await page.goto(base + PAGE_PATH);
  assert.equal(await page.inputValue('#server-url'), base); // its own origin by default
  await page.fill('#name', name);
  if (synthetic) await page.check('#synthetic');
  if (autoAnswer) await page.check('#auto-answer');
  if (token) await page.fill('#token', token);
  if (remember) await page.check('#remember-token');
  await page.click('#sign-in');
  await page.waitForSelector('#status[data-state="signed-in"]');
  return page;
}

export async function peerId(page) { return page.evaluate(() => window.pcsig.id); }

export async function selectPeer(page, id) {
  const b = page.locator(`#peers button[data-peer-id="${id}"]`);
  await b.waitFor();
  await b.click();
}

export async function chatLines(page) {
  return page.$$eval('#chat-log li', (lis) => lis.map((li) => li.textContent));
}
