// The page served by pcsig-server, in headless Chromium: two pages chat, a
// server restart, hostile names and messages, the page and the native
// client. The calls are in page_call.test.mjs, --auth-token in
// page_auth.test.mjs (each file runs as a test of its own in make test).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { startServer, pageUntil, clientBin, awaitChat } from './lib.mjs';
import { usePageBrowser, openPage, peerId, selectPeer } from './page_lib.mjs';

usePageBrowser();

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

test('a server restart: the pages sign in again by themselves', async () => {
  let srv = await startServer();
  const port = srv.port;
  const a = await openPage(srv.url, 'alice');
  const b = await openPage(srv.url, 'bob');
  try {
    await a.waitForSelector(`#peers button[data-peer-id="${await peerId(b)}"]`);
    await srv.stop();
    // Down long enough for a few sign-in attempts to fail first.
    // Polled at an interval: a count that moves on is never missed.
    await pageUntil(a, (n) => { const s = document.querySelector('#status');
      return s.dataset.state === 'reconnecting' && Number(s.dataset.attempts || 0) >= n; },
    2, 30000, 'failed sign-in attempts while the server is down');
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
