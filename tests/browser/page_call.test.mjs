// A real call between two pages served by pcsig-server, in headless
// Chromium: plain (with a screenshot), over TLS with the development CA,
// and auto-answer against --secure-ids.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { statSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { inflateSync } from 'node:zlib';
import { startServer, pageUntil, artifacts, awaitChat, awaitMediaRising } from './lib.mjs';
import { browser, certs, usePageBrowser, openPage, peerId, selectPeer, chatLines } from './page_lib.mjs';

usePageBrowser({ tls: true });

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

    // Media really flows both ways: A's fake camera to B, B's canvas to A
    // (both awaited at once: each needs a second of frames).
    await Promise.all([awaitMediaRising(a), awaitMediaRising(b)]);
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

// A screenshot that is not blank: a real size, and pixel values spread wide.
async function checkNonBlank(path) {
  const png = readFileSync(path);
  assert.ok(statSync(path).size > 20000, `screenshot ${path} is suspiciously small`);
  const { width, height, channels, pixels } = decodePng(png);
  let sum = 0, sq = 0;
  for (let i = 0; i < pixels.length; i += channels) {
    const y = (pixels[i] + pixels[i + 1] + pixels[i + 2]) / 3;
    sum += y; sq += y * y;
  }
  const n = width * height;
  const mean = sum / n;
  const stddev = Math.sqrt(sq / n - mean * mean);
  assert.ok(stddev > 20, `screenshot looks blank (stddev ${stddev})`);
}

// The pixels of an 8-bit RGB or RGBA PNG without interlacing (what
// Chromium's screenshots are), decoded here: decoding it in a page of its
// own cost a whole browser window. {width, height, channels, pixels}.
function decodePng(png) {
  assert.equal(png.subarray(0, 8).toString('hex'), '89504e470d0a1a0a', 'not a PNG');
  let width = 0, height = 0, channels = 0;
  const idat = [];
  for (let at = 8; at < png.length;) {
    const len = png.readUInt32BE(at);
    const type = png.toString('latin1', at + 4, at + 8);
    const data = png.subarray(at + 8, at + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const [depth, colour, , , interlace] = data.subarray(8, 13);
      assert.ok(depth === 8 && (colour === 2 || colour === 6) && interlace === 0,
        `PNG depth ${depth} colour type ${colour} interlace ${interlace}: not decoded here`);
      channels = colour === 6 ? 4 : 3;
    } else if (type === 'IDAT') {
      idat.push(data);
    } else if (type === 'IEND') {
      break;
    }
    at += 12 + len;
  }
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  assert.equal(raw.length, height * (stride + 1), 'PNG data of the wrong size');
  const pixels = Buffer.alloc(height * stride);
  // Undo each row's filter (none, sub, up, average, Paeth) against the
  // pixel to the left (a), above (b) and above-left (c).
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const row = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const out = y * stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= channels ? pixels[out + x - channels] : 0;
      const b = y > 0 ? pixels[out - stride + x] : 0;
      const c = x >= channels && y > 0 ? pixels[out - stride + x - channels] : 0;
      let p;
      switch (filter) {
      case 0: p = 0; break;
      case 1: p = a; break;
      case 2: p = b; break;
      case 3: p = (a + b) >> 1; break;
      case 4: {
        const e = a + b - c, ea = Math.abs(e - a), eb = Math.abs(e - b), ec = Math.abs(e - c);
        p = ea <= eb && ea <= ec ? a : eb <= ec ? b : c;
        break;
      }
      default: throw new Error(`PNG row ${y}: unknown filter ${filter}`);
      }
      pixels[out + x] = (row[x] + p) & 0xff;
    }
  }
  return { width, height, channels, pixels };
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
