// The page and the native pcsig-client in a real WebRTC call, both ways
// (issue 16): connected, media both ways (the page's getStats, the client's
// media_stats), the data channel both ways, and BYE ends both sides. Runs
// only when pcsig-client was built with media (its --version says so).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createInterface } from 'node:readline';
import {
  startServer, launchChromium, pageUntil, clientBin, awaitChat, awaitMediaRising, PAGE_PATH,
} from './lib.mjs';

const EVENT_TIMEOUT_MS = 20000;

const version = execFileSync(clientBin, ['--version']).toString();
// Under make check's sanitizers the conductor is covered by test_media (ASan,
// with GLib's load-time allocations suppressed); here a sanitized client
// beside Chromium only adds minutes and GLib's uninstrumented noise.
const sanitizer = process.env.PCSIG_SANITIZE || '';
const skip = sanitizer ? `a sanitizer build (${sanitizer}): test_media covers the conductor there`
  : /media: GStreamer/i.test(version) ? false
  : `pcsig-client was built without media (its --version: ${version.trim().replace(/\n/g, '; ')})`;

let browser;
before(async () => {
  if (skip) return;
  // The full browser here: one real call (the page against the native
  // conductor) in the chromium users run; the page files use the cheaper
  // headless shell, the same renderer and WebRTC.
  browser = await launchChromium(undefined, { full: true });
});
after(async () => { await browser?.close(); });

async function openPage(base, name, { autoAnswer = false } = {}) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.errors = errors;
  await page.goto(base + PAGE_PATH);
  await page.fill('#name', name);
  await page.check('#synthetic');
  if (autoAnswer) await page.check('#auto-answer');
  await page.click('#sign-in');
  await page.waitForSelector('#status[data-state="signed-in"]');
  return page;
}

// pcsig-client --media test --json, its events read line by line;
// next(pred, what): the first event from now on (or already seen, with
// {seen: true}) that matches, with a timeout.
function startNative(port, name, extra = []) {
  const proc = spawn(clientBin, ['--server', '127.0.0.1', '--port', String(port), '--name', name,
    '--json', '--autoconnect', '--media', 'test', '--stats-ms', '250', ...extra],
  { stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (d) => { stderr += d; });
  const events = [];
  const waiters = new Set();
  createInterface({ input: proc.stdout }).on('line', (line) => {
    let ev;
    try { ev = JSON.parse(line); } catch { ev = { event: 'unparsed', line }; }
    events.push(ev);
    for (const w of [...waiters]) w();
  });
  const exited = new Promise((r) => proc.on('exit', (code, sig) => { r(code ?? sig); for (const w of [...waiters]) w(); }));
  const event = (pred, what, { from = 0 } = {}) => new Promise((res, rej) => {
    let i = from;
    const check = () => {
      for (; i < events.length; i++) {
        if (pred(events[i])) { done(); res(events[i]); return; }
      }
      if (proc.exitCode !== null || proc.signalCode !== null) {
        done();
        rej(new Error(`pcsig-client exited waiting for ${what}; stderr:\n${stderr}`));
      }
    };
    const timer = setTimeout(() => {
      done();
      rej(new Error(`timed out waiting for ${what}; events:\n${events.map((e) => JSON.stringify(e)).join('\n')}\nstderr:\n${stderr}`));
    }, EVENT_TIMEOUT_MS);
    const done = () => { clearTimeout(timer); waiters.delete(check); };
    waiters.add(check);
    check();
  });
  return {
    proc, events, event,
    cmd: (o) => proc.stdin.write(JSON.stringify(o) + '\n'),
    // The native side receives video: video_frames_received rises past n.
    async framesAbove(n) {
      return event((e) => e.event === 'media_stats' && e.video_frames_received > n &&
        e.audio_frames_received > 0, `native video_frames_received > ${n}`, { from: events.length });
    },
    async stop() {
      proc.stdin.end();
      const timer = setTimeout(() => proc.kill('SIGKILL'), 10000);
      const code = await exited;
      clearTimeout(timer);
      assert.equal(code, 0, `pcsig-client exit ${code}; stderr:\n${stderr}`);
    },
  };
}

// Connected, media both ways, the data channel both ways: the same checks
// whoever called.
async function checkCall(page, native, nativeId) {
  await page.waitForSelector('#call-state[data-state="connected"]', { timeout: EVENT_TIMEOUT_MS });
  assert.equal(await page.evaluate(() => window.pcsig.pc.connectionState), 'connected');
  const connected = await native.event((e) => e.event === 'call' && e.state === 'connected', 'native call connected');
  await native.event((e) => e.event === 'dc_open', 'native dc_open');

  // Media both ways, awaited at once (each takes a second or so of frames).
  await Promise.all([
    awaitMediaRising(page, EVENT_TIMEOUT_MS),
    native.framesAbove(0).then((seen) => native.framesAbove(seen.video_frames_received + 5)),
  ]);
  // What the two negotiated: VP8 and Opus, the native side's test media.
  const codecs = await page.evaluate(async () => {
    const r = await window.pcsig.pc.getStats();
    const out = new Set();
    r.forEach((s) => {
      const c = s.type === 'inbound-rtp' && s.codecId && r.get(s.codecId);
      if (c) out.add(c.mimeType.toLowerCase());
    });
    return [...out].sort();
  });
  assert.deepEqual(codecs, ['audio/opus', 'video/vp8']);

  await page.waitForSelector('#dc-input:not([disabled])');
  await page.fill('#dc-input', 'from the page over the data channel');
  await page.click('#dc-send');
  const m = await native.event((e) => e.event === 'dc_message', 'native dc_message');
  assert.equal(m.data, 'from the page over the data channel');
  assert.equal(m.from, await page.evaluate(() => window.pcsig.id));
  native.cmd({ cmd: 'send', via: 'dc', data: 'from the native client' });
  await awaitChat(page, 'from the native client', EVENT_TIMEOUT_MS);
  assert.ok(nativeId > 0);
  const first = native.events.find((e) => e.event === 'first_frame');
  // The native side's set-up times (offer sent or received -> connected,
  // -> its first decoded remote frame), for BENCHMARKS.md.
  return `native setup_ms ${connected.setup_ms} first_frame ${first?.kind} ${first?.ms} ms`;
}

test('the page calls the native client: media and data channel both ways, the page hangs up',
  { skip }, async (t) => {
    const srv = await startServer();
    const native = startNative(srv.port, 'native');
    try {
      const signedIn = await native.event((e) => e.event === 'signed_in', 'native signed_in');
      const page = await openPage(srv.url, 'web');
      const b = page.locator(`#peers button[data-peer-id="${signedIn.id}"]`);
      await b.waitFor();
      await b.click();
      await page.click('#call');
      t.diagnostic(await checkCall(page, native, signedIn.id));
      await page.click('#hang-up');
      await page.waitForSelector('#call-state[data-state="ended"]');
      // The page says BYE and closes its connection at once: the native side
      // sees either first, and either is the peer ending the call (not a
      // "media pipeline error" of its own, nor a BYE sent back).
      const ended = await native.event((e) => e.event === 'call' && e.state === 'ended', 'native call ended');
      assert.match(ended.reason, /^the peer (hung up \(BYE\)|closed the connection)$/);
      assert.deepEqual(page.errors, []);
      await page.context().close();
    } finally {
      await native.stop();
      await srv.stop();
    }
  });

test('the native client calls the page (auto-answer): media and data channel both ways, BYE from the native side',
  { skip }, async (t) => {
    const srv = await startServer();
    const native = startNative(srv.port, 'native');
    try {
      const signedIn = await native.event((e) => e.event === 'signed_in', 'native signed_in');
      const page = await openPage(srv.url, 'web', { autoAnswer: true });
      const me = await page.evaluate(() => window.pcsig.id);
      await native.event((e) => e.event === 'peer_joined' && e.id === me, 'native sees the page join');
      native.cmd({ cmd: 'call', to: me });
      t.diagnostic(await checkCall(page, native, signedIn.id));
      native.cmd({ cmd: 'hangup' });
      const ended = await native.event((e) => e.event === 'call' && e.state === 'ended', 'native call ended');
      assert.equal(ended.reason, 'hung up');
      await page.waitForSelector('#call-state[data-state="ended"]', { timeout: EVENT_TIMEOUT_MS });
      await pageUntil(page, () => [...document.querySelectorAll('#chat-log li')]
        .some((l) => l.textContent.includes('the peer hung up')), null, EVENT_TIMEOUT_MS, 'the page to say the peer hung up');
      assert.deepEqual(page.errors, []);
      await page.context().close();
    } finally {
      await native.stop();
      await srv.stop();
    }
  });
