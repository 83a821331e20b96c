// --auth-token(-file) in the page served by pcsig-server, in headless
// Chromium: 401 messages, sign-in and chat with the token, restarts, and
// another origin's preflight.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, pageUntil, awaitChat } from './lib.mjs';
import { browser, usePageBrowser, openPage, peerId, selectPeer } from './page_lib.mjs';

usePageBrowser();

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
    // Polled at an interval: a count that moves on is never missed.
    await pageUntil(a, (n) => { const s = document.querySelector('#status');
      return s.dataset.state === 'reconnecting' && Number(s.dataset.attempts || 0) >= n; },
    1, 30000, 'failed sign-in attempts while the server is down');
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
