// The page served by pcsig-server, in headless Chromium: chat, a real call
// (plain and TLS), a server restart, hostile names and messages, and a
// screenshot of a call. One browser for all of them; a fresh context (no
// shared state) per page.
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

let browser, certs;

before(async () => {
  certs = devCerts();
  browser = await chromium.launch({ executablePath: chromiumBin, headless: true, args: chromiumArgs(certs.spki) });
});
after(async () => { await browser?.close(); });

// A page of the server at base, signed in as name (synthetic media when asked).
// token: the access token (--auth-token), remembered in the tab when asked;
// watch(context) sees the context before the page loads.
async function openPage(base, name, { synthetic = false, autoAnswer = false, token, remember = false, watch } = {}) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  watch?.(context);
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.errors = errors;
  await page.goto(base + '/');
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

async function peerId(page) { return page.evaluate(() => window.pcsig.id); }

async function selectPeer(page, id) {
  const b = page.locator(`#peers button[data-peer-id="${id}"]`);
  await b.waitFor();
  await b.click();
}

async function chatLines(page) {
  return page.$$eval('#chat-log li', (lis) => lis.map((li) => li.textContent));
}

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

test('two pages sign in, see each other and chat both ways', async () => {
  const srv = await startServer();
  try {
    const a = await openPage(srv.url, 'alice');
    const b = await openPage(srv.url, 'bob');
    const idA = await peerId(a), idB = await peerId(b);
    await selectPeer(a, idB);
    await selectPeer(b, idA);
    assert.equal(await a.textContent(`#peers button[data-peer-id="${idB}"]`), `bob (${idB})`);
    await a.fill('#chat-input', 'hello bob');
    await a.click('#chat-send');
    await awaitChat(b, 'hello bob');
    await b.fill('#chat-input', 'hi alice');
    await b.click('#chat-send');
    await awaitChat(a, 'hi alice');
    // Leaving shows at once on the other side.
    await b.click('#sign-out');
    await a.waitForSelector(`#peers button[data-peer-id="${idB}"]`, { state: 'detached' });
    await a.context().close();
    await b.context().close();
  } finally {
    await srv.stop();
  }
});

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

test('a server restart: the pages sign in again by themselves', async () => {
  let srv = await startServer();
  const port = srv.port;
  const a = await openPage(srv.url, 'alice');
  const b = await openPage(srv.url, 'bob');
  try {
    await a.waitForSelector(`#peers button[data-peer-id="${await peerId(b)}"]`);
    await srv.stop();
    // Down long enough for a few sign-in attempts to fail first.
    await a.waitForSelector('#status[data-state="reconnecting"][data-attempts="2"]');
    srv = await startServer([], { port });
    await a.waitForSelector('#status[data-state="signed-in"]', { timeout: 20000 });
    await b.waitForSelector('#status[data-state="signed-in"]', { timeout: 20000 });
    // They see each other again, under their new ids, and can chat.
    const idA = await peerId(a), idB = await peerId(b);
    await selectPeer(a, idB);
    await selectPeer(b, idA);
    await a.fill('#chat-input', 'still here');
    await a.click('#chat-send');
    await awaitChat(b, 'still here');
  } finally {
    await a.context().close();
    await b.context().close();
    await srv.stop();
  }
});

// One raw HTTP/1.0 request, the stock client's way; resolves to the reply.
function rawRequest(port, text) {
  return new Promise((res, rej) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(text));
    let got = '';
    s.on('data', (d) => { got += d; });
    s.on('end', () => res(got));
    s.on('error', rej);
  });
}

test('a hostile name and message show as text, never as HTML', async () => {
  const srv = await startServer();
  try {
    const evil = '<img src=x onerror=window.pwned=1>';
    const a = await openPage(srv.url, evil);
    // A member whose raw name (no spaces: they end the request target) is markup.
    const rawName = '<img/src=x/onerror=window.pwned=2>';
    const signIn = await rawRequest(srv.port, `GET /sign_in?${rawName} HTTP/1.0\r\n\r\n`);
    const id = Number(/\r\nPragma: (\d+)/.exec(signIn)[1]);
    await selectPeer(a, id);
    const msg = '<img src=x onerror=window.pwned=3><b>bold</b>';
    const idA = await peerId(a);
    const ack = await rawRequest(srv.port, `POST /message?peer_id=${id}&to=${idA} HTTP/1.0\r\n` +
      `Content-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(msg)}\r\n\r\n${msg}`);
    assert.match(ack, /^HTTP\/1.1 200 OK/);
    await awaitChat(a, msg);
    // A second page sees the first one's name, decoded, as text.
    const b = await openPage(srv.url, 'observer');
    await b.waitForSelector(`#peers button[data-peer-id="${idA}"]`);
    assert.equal(await b.textContent(`#peers button[data-peer-id="${idA}"]`), `${evil} (${idA})`);
    assert.equal(await a.textContent(`#peers button[data-peer-id="${id}"]`), `${rawName} (${id})`);
    assert.match(await a.textContent('#status'), /signed in as <img src=x onerror=window\.pwned=1>/);
    for (const p of [a, b]) {
      assert.equal(await p.evaluate(() => document.querySelectorAll('img, b').length), 0);
      assert.equal(await p.evaluate(() => window.pwned), undefined);
    }
    await a.context().close();
    await b.context().close();
  } finally {
    await srv.stop();
  }
});

test('the page and the native pcsig-client chat both ways', async () => {
  const srv = await startServer();
  const client = spawn(clientBin, ['--server', '127.0.0.1', '--port', String(srv.port), '--name', 'native', '--json'],
    { stdio: ['pipe', 'pipe', 'inherit'] });
  const events = [];
  const waiters = [];
  createInterface({ input: client.stdout }).on('line', (line) => {
    const ev = JSON.parse(line);
    events.push(ev);
    for (const w of waiters.splice(0)) w();
  });
  // The first event that matches, awaited (each new line re-checks).
  const eventMatching = async (pred) => {
    for (;;) {
      const ev = events.find(pred);
      if (ev) return ev;
      await new Promise((r) => waiters.push(r));
    }
  };
  try {
    const page = await openPage(srv.url, 'web');
    const me = await peerId(page);
    const signedIn = await eventMatching((e) => e.event === 'signed_in');
    await selectPeer(page, signedIn.id);
    client.stdin.write(JSON.stringify({ cmd: 'send', to: me, data: 'hello from the CLI' }) + '\n');
    await awaitChat(page, 'hello from the CLI');
    await page.fill('#chat-input', 'hello from the page');
    await page.click('#chat-send');
    const msg = await eventMatching((e) => e.event === 'message');
    assert.equal(msg.from, me);
    assert.equal(msg.data, 'hello from the page');
    await page.context().close();
  } finally {
    client.stdin.end();
    await new Promise((r) => (client.exitCode !== null ? r() : client.on('exit', r)));
    await srv.stop();
  }
});

// --auth-token-file: what the page shows without the token and with a wrong
// one; with it two pages sign in and chat, and sign in again by themselves
// after a restart; a restart with another token stops them with a message.
// The token goes only in the Authorization header of /sign_in, never in a URL.
test('--auth-token-file: 401 messages, sign-in and chat with the token, restarts', async () => {
  const token = 'page-test-token-0123456789abcdef';
  const dir = mkdtempSync(join(tmpdir(), 'pcsig-auth-'));
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `# test\n${token}\n`, { mode: 0o600 });
  let srv = await startServer(['--auth-token-file', tokens]);
  const port = srv.port;
  const urls = [];
  const signInAuth = [];
  const watch = (context) => context.on('request', (r) => {
    urls.push(r.url());
    if (r.url().includes('/sign_in')) signInAuth.push(r.headers().authorization ?? null);
  });
  const pages = [];
  try {
    // No token, then a wrong one: the page says which, and stays signed out.
    const context = await browser.newContext();
    watch(context);
    const p = await context.newPage();
    pages.push(p);
    await p.goto(srv.url + '/');
    await p.click('#sign-in');
    await p.waitForSelector('#status[data-state="auth-needed"]');
    assert.match(await p.textContent('#status'), /this server needs an access token/);
    assert.equal(await p.isEnabled('#token'), true);
    await p.fill('#token', 'wrong-token');
    await p.click('#sign-in');
    await p.waitForSelector('#status[data-state="auth-refused"]');
    assert.match(await p.textContent('#status'), /token refused/);
    assert.equal(await p.getAttribute('#token', 'type'), 'password');
    assert.equal(await p.getAttribute('#token', 'autocomplete'), 'off');
    await context.close();
    pages.length = 0;

    // With the token: two pages sign in and chat.
    const a = await openPage(srv.url, 'alice', { token, watch });
    const b = await openPage(srv.url, 'bob', { token, watch, remember: true });
    pages.push(a, b);
    const chat = async (from, to, text) => {
      await selectPeer(from, await peerId(to));
      await from.fill('#chat-input', text);
      await from.click('#chat-send');
      await awaitChat(to, text);
    };
    await chat(a, b, 'hello with a token');
    await chat(b, a, 'hi back');

    // A restart with the same tokens: both sign in again with the token.
    await srv.stop();
    await a.waitForSelector('#status[data-state="reconnecting"][data-attempts="1"]');
    srv = await startServer(['--auth-token-file', tokens], { port });
    await a.waitForSelector('#status[data-state="signed-in"]', { timeout: 20000 });
    await b.waitForSelector('#status[data-state="signed-in"]', { timeout: 20000 });
    await chat(a, b, 'after the restart');

    // "remember": a reload of b's tab keeps the token; a's does not.
    await b.reload();
    assert.equal(await b.inputValue('#token'), token);
    assert.equal(await b.isChecked('#remember-token'), true);
    await a.reload();
    assert.equal(await a.inputValue('#token'), '');
    await b.click('#sign-in');
    await b.waitForSelector('#status[data-state="signed-in"]');

    // A restart with another token: retrying cannot help, so b stops.
    writeFileSync(tokens, 'another-token\n', { mode: 0o600 });
    await srv.stop();
    srv = await startServer(['--auth-token-file', tokens], { port });
    await b.waitForSelector('#status[data-state="auth-refused"]', { timeout: 20000 });
    assert.match(await b.textContent('#status'), /token refused/);
    assert.equal(await b.isEnabled('#token'), true);

    assert.ok(signInAuth.length >= 6, `sign-ins seen: ${signInAuth.length}`);
    assert.ok(signInAuth.includes(`Bearer ${token}`));
    assert.ok(signInAuth.every((h) => h === null || h === `Bearer ${token}` || h === 'Bearer wrong-token'));
    for (const u of urls) assert.ok(!u.includes(token) && !u.includes('wrong-token'), `token in ${u}`);
    for (const pg of [a, b]) assert.deepEqual(pg.errors.filter((e) => !/401|Failed to load/.test(e)), []);
  } finally {
    for (const pg of pages) await pg.context().close();
    await srv.stop();
  }
});

// The page of one server signs in to another (another origin): the
// Authorization header needs the second server's CORS preflight to allow it.
test('--auth-token across origins: the preflight allows Authorization', async () => {
  const token = 'cross-origin-token';
  const dir = mkdtempSync(join(tmpdir(), 'pcsig-auth-'));
  const tokens = join(dir, 'tokens');
  writeFileSync(tokens, `${token}\n`, { mode: 0o600 });
  const home = await startServer();
  const other = await startServer(['--auth-token-file', tokens]);
  try {
    const context = await browser.newContext();
    const p = await context.newPage();
    await p.goto(home.url + '/');
    await p.fill('#server-url', other.url);
    await p.fill('#token', token);
    await p.click('#sign-in');
    await p.waitForSelector('#status:not([data-state="signing-in"])');
    // Without Authorization in the preflight's answer: "cannot reach".
    assert.equal(await p.getAttribute('#status', 'data-state'), 'signed-in', await p.textContent('#status'));
    // The /wait loop runs there too: a member signing in shows up.
    const res = await fetch(`${other.url}/sign_in?native`, { headers: { Authorization: `Bearer ${token}` } });
    assert.equal(res.status, 200);
    const id = Number(res.headers.get('pragma'));
    await p.waitForSelector(`#peers button[data-peer-id="${id}"]`);
    await p.click('#sign-out');
    await context.close();
  } finally {
    await other.stop();
    await home.stop();
  }
});
