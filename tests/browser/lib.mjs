// Helpers of the browser tests: the real pcsig-server on a loopback port,
// a development CA for TLS, and a headless Chromium.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { once } from 'node:events';
import { createRequire } from 'node:module';
import { createHash, createPublicKey } from 'node:crypto';

export const root = resolve(new URL('../..', import.meta.url).pathname);
export const serverBin = process.env.PCSIG_SERVER || join(root, 'build/pcsig-server');
export const clientBin = process.env.PCSIG_CLIENT || join(root, 'build/pcsig-client');
// Chromium's headless shell by default (run.sh says why).
export const chromiumBin = process.env.PCSIG_CHROMIUM || '/usr/bin/chromium-headless-shell';
// The full browser (Debian's chromium), for the file that must show a call
// works in what users run, not only in the headless shell (native.test.mjs).
export const fullChromiumBin = process.env.PCSIG_CHROMIUM_FULL || '/usr/bin/chromium';
// Test artifacts (screenshots) under the build directory.
export const artifacts = join(resolve(root, process.env.PCSIG_BUILD || 'build'), 'browser');
mkdirSync(artifacts, { recursive: true });

const START_TIMEOUT_MS = 15000;
const STOP_TIMEOUT_MS = 20000;

// Start pcsig-server with --bind 127.0.0.1 and args; resolves once it printed
// its ready line(s): {port, tlsPort, url, tlsUrl, stop(), log()}.
export async function startServer(args = [], { port = 0 } = {}) {
  const proc = spawn(serverBin, ['--bind', '127.0.0.1', '--port', String(port), ...args],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const wantTls = args.includes('--tls-port');
  const ready = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`server not ready in time; stderr:\n${err}`)), START_TIMEOUT_MS);
    proc.stdout.on('data', (d) => {
      out += d;
      const plain = /listening on port (\d+)/.exec(out);
      const tls = /listening on TLS port (\d+)/.exec(out);
      if (plain && (!wantTls || tls)) {
        clearTimeout(timer);
        res({ port: Number(plain[1]), tlsPort: tls ? Number(tls[1]) : 0 });
      }
    });
    proc.on('exit', (code) => { clearTimeout(timer); rej(new Error(`server exited ${code}; stderr:\n${err}`)); });
  });
  const { port: p, tlsPort } = await ready;
  const exited = once(proc, 'exit');
  return {
    port: p, tlsPort,
    url: `http://127.0.0.1:${p}`,
    tlsUrl: tlsPort ? `https://localhost:${tlsPort}` : null,
    log: () => err,
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), STOP_TIMEOUT_MS);
      const [code, signal] = await exited;
      clearTimeout(timer);
      // A clean drain exits 0 (a sanitizer's report would not).
      if (code !== 0) throw new Error(`server exit ${code ?? signal}; stderr:\n${err}`);
    },
  };
}

// Run the server binary to completion (a start-up error): {code, stderr}.
export async function runServer(args) {
  const proc = spawn(serverBin, ['--bind', '127.0.0.1', '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  proc.stderr.on('data', (d) => { err += d; });
  const [code] = await once(proc, 'exit');
  return { code, stderr: err };
}

// A development CA and server certificate (certs/gen-certs.sh): the ones
// make test made once for all its TLS runs (PCSIG_TEST_CERTS), else fresh
// ones; and the base64 SHA-256 of the server key's SPKI: what Chromium is
// told to trust. Read here, not by spawning openssl twice.
export function devCerts() {
  let dir = process.env.PCSIG_TEST_CERTS;
  if (!dir) {
    dir = mkdtempSync(join(tmpdir(), 'pcsig-browser-certs-'));
    execFileSync(join(root, 'certs/gen-certs.sh'), ['--force', dir], { stdio: 'ignore' });
  }
  const der = createPublicKey(readFileSync(join(dir, 'server.key'))).export({ type: 'spki', format: 'der' });
  const spki = createHash('sha256').update(der).digest('base64');
  return { dir, cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), ca: readFileSync(join(dir, 'ca.pem')), spki };
}

// Chromium's flags for this machine: headless, no GPU, fake camera and
// microphone granted without a prompt, host addresses in ICE candidates
// (no mDNS here), and TLS trust for exactly our development key. The fake
// camera at 10 frames a second: the tests check that media flows, and
// encoding 30 frames a second cost each call a fifth more CPU. With the
// full browser (native.test.mjs, or every file with
// PCSIG_CHROMIUM=/usr/bin/chromium) each page is a window of
// its own, and each window also built the omnibox's WebUI popups (two
// renderers nobody sees): without them a page costs about a third less CPU
// and opens sooner (the headless shell has no omnibox; unknown feature
// names are ignored, so any Chromium takes these flags).
const DISABLED_FEATURES = [
  'WebRtcHideLocalIpsWithMdns',
  'WebUIOmniboxPopup', 'WebUIOmniboxAimPopup', 'WebUIOmniboxFullPopup', 'PreloadTopChromeWebUI',
];
export function chromiumArgs(spki) {
  return [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-device-for-media-stream=fps=10', '--use-fake-ui-for-media-stream',
    '--autoplay-policy=no-user-gesture-required',
    `--disable-features=${DISABLED_FEATURES.join(',')}`,
    ...(spki ? [`--ignore-certificate-errors-spki-list=${spki}`] : []),
  ];
}

// The page as the tests open it: camera and synthetic canvas at 160x120,
// 10 frames a second (the page's ?video=WxH@FPS). The calls check that
// media flows, not how it looks: two pages in a call at the default sizes
// (the canvas 320x240 at 30, the fake camera 640x480) cost 0.61 CPU
// seconds a second, at these 0.44.
export const PAGE_PATH = '/?video=160x120@10';

// A headless Chromium with chromiumArgs(spki). playwright-core is loaded
// here, with require() and only by the files that launch a browser:
// imported as an ES module, its 7 MB CommonJS bundle was first scanned
// whole for named exports, a quarter of a second of CPU per test file.
const require = createRequire(import.meta.url);
// full: Debian's full chromium (in its --headless mode) instead of the shell.
export function launchChromium(spki, { full = false } = {}) {
  const { chromium } = require('playwright-core');
  return chromium.launch({ executablePath: full ? fullChromiumBin : chromiumBin, headless: true, args: chromiumArgs(spki) });
}

// Await a condition inside the page, polled every 100 ms; a timeout fails.
// The condition must be synchronous: waitForFunction takes the Promise an
// async one returns for a true value at once (awaitMediaRising below polls
// its async condition itself).
export async function pageUntil(page, fn, arg, timeoutMs = 20000, what = 'condition') {
  if (fn.constructor.name === 'AsyncFunction') throw new Error(`pageUntil(${what}): an async condition is always true`);
  try {
    await page.waitForFunction(fn, arg, { polling: 100, timeout: timeoutMs });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}: ${e.message.split('\n')[0]}`);
  }
}

// A chat line with exactly this text shows up in the page.
export async function awaitChat(page, text, timeoutMs = 30000) {
  await page.waitForFunction((t) => [...document.querySelectorAll('#chat-log li .text')]
    .some((e) => e.textContent === t), text, { timeout: timeoutMs });
}

// Media flows into the page: inbound video bytes, decoded frames (by more
// than 10) and audio bytes each rise past their values now. Polled inside
// the page every 100 ms (getStats is async, so not through pageUntil).
export async function awaitMediaRising(page, timeoutMs = 20000) {
  const r = await page.evaluate(async (ms) => {
    const inbound = async () => {
      const stats = await window.pcsig.pc.getStats();
      const o = { videoBytes: 0, frames: 0, audioBytes: 0 };
      stats.forEach((s) => {
        if (s.type !== 'inbound-rtp') return;
        if (s.kind === 'video') { o.videoBytes += s.bytesReceived || 0; o.frames += s.framesDecoded || 0; }
        if (s.kind === 'audio') o.audioBytes += s.bytesReceived || 0;
      });
      return o;
    };
    const t0 = await inbound();
    const end = Date.now() + ms;
    for (;;) {
      const now = await inbound();
      if (now.videoBytes > t0.videoBytes && now.frames > t0.frames + 10 && now.audioBytes > t0.audioBytes) return null;
      if (Date.now() > end) return { t0, now };
      await new Promise((res) => setTimeout(res, 100));
    }
  }, timeoutMs);
  if (r) {
    throw new Error(`timed out waiting for the page's inbound video and audio to rise: from ${JSON.stringify(r.t0)} to ${JSON.stringify(r.now)}`);
  }
}
