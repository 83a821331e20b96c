// A real call between two pages served by pcsig-server, in headless
// Chromium: plain (with a screenshot), over TLS with the development CA,
// and auto-answer against --secure-ids.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { statSync, readFileSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import {
  startServer, devCerts, chromiumArgs, chromiumBin, pageUntil, artifacts, clientBin, awaitChat,
  awaitMediaRising,
} from './lib.mjs';
import { browser, certs, usePageBrowser, openPage, peerId, selectPeer, chatLines } from './page_lib.mjs';

usePageBrowser();

// A calls B (B accepts), chat over the data channel both ways, media both
// ways, screenshot (optional), then A hangs up and both see it end.
async function callScenario(base, { screenshot } = {}) {
  const a = await openPage(base, 'alice');
  const b = await openPage(base, 'bob', { synthetic: true });
  try {
    const idA = await peerId(a), idB = await peerId(b);
    await selectPeer(a, idB);
    await a.click('#call');
    await b.waitForSelector('#incoming:not([hidden])');
    assert.equal(await b.textContent('#incoming-from'), 'alice');
    assert.ok(idA > 0);
    await b.click('#accept');
    await a.waitForSelector('#call-state[data-state="connected"]', { timeout: 20000 });
    await b.waitForSelector('#call-state[data-state="connected"]', { timeout: 20000 });
    assert.equal(await a.evaluate(() => window.pcsig.pc.connectionState), 'connected');

    // The data channel, both ways.
    await a.waitForSelector('#dc-input:not([disabled])');
    await b.waitForSelector('#dc-input:not([disabled])');
    await a.fill('#dc-input', 'ping over the data channel');
    await a.click('#dc-send');
    await awaitChat(b, 'ping over the data channel');
    await b.fill('#dc-input', 'pong');
    await b.click('#dc-send');
    await awaitChat(a, 'pong');

    // Media really flows both ways: A's fake camera to B, B's canvas to A.
    await awaitMediaRising(a);
    await awaitMediaRising(b);
    // The page's own stats show it too.
    await pageUntil(a, () => /kbit\/s/.test(document.getElementById('stat-bitrate').textContent) &&
      document.getElementById('stat-codec').textContent !== '-', null, 10000, 'stats shown');

    if (screenshot) {
      // The remote video has moving pixels before the picture is taken.
      await pageUntil(a, () => {
        const v = document.getElementById('remote-video');
        return v.videoWidth > 0 && v.readyState >= 2;
      }, null, 10000, 'remote video playing');
      const path = join(artifacts, screenshot);
      await a.screenshot({ path });
      await checkNonBlank(path);
    }

    await a.click('#hang-up');
    await a.waitForSelector('#call-state[data-state="ended"]');
    await b.waitForSelector('#call-state[data-state="ended"]');
    assert.ok((await chatLines(b)).some((l) => l.includes('the peer hung up')));
    assert.deepEqual(a.errors, []);
    assert.deepEqual(b.errors, []);
  } finally {
    await a.context().close();
    await b.context().close();
  }
}

// A screenshot that is not blank: a real size, and pixel values spread wide
// (decoded by Chromium itself in a blank page).
async function checkNonBlank(path) {
  const png = readFileSync(path);
  assert.ok(statSync(path).size > 20000, `screenshot ${path} is suspiciously small`);
  const context = await browser.newContext();
  const page = await context.newPage();
  const stddev = await page.evaluate(async (b64) => {
    const img = new Image();
    img.src = 'data:image/png;base64,' + b64;
    await img.decode();
    const c = document.createElement('canvas');
    c.width = img.width; c.height = img.height;
    const g = c.getContext('2d');
    g.drawImage(img, 0, 0);
    const d = g.getImageData(0, 0, c.width, c.height).data;
    let sum = 0, sq = 0, n = 0;
    for (let i = 0; i < d.length; i += 4) {
      const y = (d[i] + d[i + 1] + d[i + 2]) / 3;
      sum += y; sq += y * y; n++;
    }
    const mean = sum / n;
    return Math.sqrt(sq / n - mean * mean);
  }, png.toString('base64'));
  await context.close();
  assert.ok(stddev > 20, `screenshot looks blank (stddev ${stddev})`);
}

test('a call: connected, data channel both ways, media both ways, BYE ends it (plain)', async () => {
  const srv = await startServer();
  try {
    await callScenario(srv.url, { screenshot: 'call.png' });
  } finally {
    await srv.stop();
  }
});

test('the same call over TLS with the development CA', async () => {
  const srv = await startServer(['--tls-cert', certs.cert, '--tls-key', certs.key, '--tls-port', '0']);
  try {
    await callScenario(srv.tlsUrl);
  } finally {
    await srv.stop();
  }
});

test('auto-answer: the call is taken without a click (against --secure-ids)', async () => {
  // --secure-ids: every /wait, /message and /sign_out must carry the token.
  const srv = await startServer(['--secure-ids']);
  try {
    const a = await openPage(srv.url, 'caller', { synthetic: true });
    const b = await openPage(srv.url, 'answerer', { synthetic: true, autoAnswer: true });
    await selectPeer(a, await peerId(b));
    await a.click('#call');
    await b.waitForSelector('#call-state[data-state="connected"]', { timeout: 20000 });
    await a.waitForSelector('#call-state[data-state="connected"]', { timeout: 20000 });
    await b.click('#hang-up');
    await a.waitForSelector('#call-state[data-state="ended"]');
    await a.context().close();
    await b.context().close();
  } finally {
    await srv.stop();
  }
});
