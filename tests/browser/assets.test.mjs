// The page's files at the HTTP level (no browser): types, ETag/304, the
// security headers, /config.json, --no-web, --web-root and its refusals,
// start-up errors, and the same over TLS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import https from 'node:https';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync, mkdirSync, symlinkSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, runServer, devCerts, root } from './lib.mjs';

// One request: {status, headers, body}. opts: method, headers, body, ca (TLS).
function request(base, path, opts = {}) {
  const u = new URL(base);
  const mod = u.protocol === 'https:' ? https : http;
  return new Promise((res, rej) => {
    const req = mod.request({
      host: u.hostname, port: u.port, path, method: opts.method || 'GET',
      headers: opts.headers || {}, ca: opts.ca, agent: false,
    }, (r) => {
      const chunks = [];
      r.on('data', (c) => chunks.push(c));
      r.on('end', () => res({ status: r.statusCode, headers: r.headers, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', rej);
    req.end(opts.body);
  });
}

const file = (name) => readFileSync(join(root, 'web', name), 'utf8');

async function checkPage(base, ca) {
  const page = await request(base, '/', { ca });
  assert.equal(page.status, 200);
  assert.equal(page.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(page.body, file('index.html'));
  assert.match(page.headers.etag, /^"[0-9a-f]{16}"$/);
  assert.equal(page.headers['cache-control'], 'no-cache');
  assert.equal(page.headers['x-content-type-options'], 'nosniff');
  const csp = page.headers['content-security-policy'];
  assert.match(csp, /default-src 'none'/);
  assert.match(csp, /script-src 'self';/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.match(csp, /frame-ancestors 'none'/);
  const index = await request(base, '/index.html', { ca });
  assert.equal(index.headers.etag, page.headers.etag);
  assert.equal(index.body, page.body);

  for (const [path, type, name] of [['/app.js', 'text/javascript; charset=utf-8', 'app.js'],
    ['/app.css', 'text/css; charset=utf-8', 'app.css']]) {
    const r = await request(base, path, { ca });
    assert.equal(r.status, 200, path);
    assert.equal(r.headers['content-type'], type);
    assert.equal(r.body, file(name));
    assert.notEqual(r.headers.etag, page.headers.etag);
    // Revalidation: the same tag (strong, weak, in a list, "*") is a 304
    // without a body; another tag gets the file again.
    for (const inm of [r.headers.etag, `W/${r.headers.etag}`, `"0000000000000000", ${r.headers.etag}`, '*']) {
      const again = await request(base, path, { ca, headers: { 'If-None-Match': inm } });
      assert.equal(again.status, 304, `If-None-Match: ${inm}`);
      assert.equal(again.body, '');
      assert.equal(again.headers.etag, r.headers.etag);
    }
    const other = await request(base, path, { ca, headers: { 'If-None-Match': '"0000000000000000"' } });
    assert.equal(other.status, 200);
  }
  const post = await request(base, '/', { ca, method: 'POST', body: 'x' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  await checkHead(base, ca);
  // The protocol's paths and the server's own are not shadowed.
  const signIn = await request(base, '/sign_in?page-test', { ca });
  assert.equal(signIn.status, 200);
  assert.match(signIn.body, /^page-test,\d+,1\n/);
  assert.equal((await request(base, '/health', { ca })).status, 200);
  assert.equal((await request(base, '/nope', { ca })).status, 404);
  assert.equal((await request(base, '/app.js.map', { ca })).status, 404);
}

// HEAD: the page's paths answer the GET's head without its body (same
// Content-Length, ETag, CSP); every other path keeps the answer of an
// unknown method, 405 and closed, and a HEAD never signs anyone in.
async function checkHead(base, ca) {
  for (const path of ['/', '/index.html', '/app.js', '/app.css', '/config.json']) {
    const get = await request(base, path, { ca });
    const head = await request(base, path, { ca, method: 'HEAD' });
    assert.equal(head.status, 200, path);
    assert.equal(head.body, '');
    assert.equal(head.headers['content-length'], String(Buffer.byteLength(get.body)), path);
    for (const h of ['content-type', 'etag', 'cache-control', 'content-security-policy'])
      assert.equal(head.headers[h], get.headers[h], `${path} ${h}`);
    if (get.headers.etag) {
      const again = await request(base, path, { ca, method: 'HEAD', headers: { 'If-None-Match': get.headers.etag } });
      assert.equal(again.status, 304);
    }
  }
  for (const path of ['/sign_in?head-test', '/sign_out?peer_id=1', '/wait?peer_id=1',
    '/message?peer_id=1&to=1', '/quit', '/health', '/metrics', '/nope']) {
    const r = await request(base, path, { ca, method: 'HEAD' });
    assert.equal(r.status, 405, path);
    assert.equal(r.headers.allow, 'GET, POST, OPTIONS');
    assert.equal(r.headers.connection, 'close');
  }
  const list = await request(base, '/sign_in?after-head', { ca });
  assert.doesNotMatch(list.body, /head-test/);
}

test('the built-in page: types, ETag and 304, security headers, no shadowing', async () => {
  const srv = await startServer();
  try {
    await checkPage(srv.url);
    const cfg = await request(srv.url, '/config.json');
    assert.equal(cfg.status, 200);
    assert.equal(cfg.headers['content-type'], 'application/json');
    assert.deepEqual(JSON.parse(cfg.body), { iceServers: [] });
  } finally {
    await srv.stop();
  }
});

test('the same page over TLS', async () => {
  const certs = devCerts();
  const srv = await startServer(['--tls-cert', certs.cert, '--tls-key', certs.key, '--tls-port', '0']);
  try {
    await checkPage(srv.tlsUrl, certs.ca);
  } finally {
    await srv.stop();
  }
});

test('--ice-server and TURN credentials reach the page as JSON', async () => {
  let srv = await startServer(['--ice-server', 'stun:stun.example.org:3478', '--ice-server',
    'turn:turn.example.org?transport=tcp', '--ice-username', 'user"1', '--ice-credential', 'pa\\ss']);
  try {
    const cfg = JSON.parse((await request(srv.url, '/config.json')).body);
    assert.deepEqual(cfg, { iceServers: [{
      urls: ['stun:stun.example.org:3478', 'turn:turn.example.org?transport=tcp'],
      username: 'user"1', credential: 'pa\\ss',
    }] });
  } finally {
    await srv.stop();
  }
  // The TURN REST scheme: "<expiry>:pcsig" and base64(HMAC-SHA1(secret, it)).
  srv = await startServer(['--ice-server', 'turns:turn.example.org', '--ice-secret', 's3cret']);
  try {
    const before = Math.floor(Date.now() / 1000);
    const { iceServers: [entry] } = JSON.parse((await request(srv.url, '/config.json')).body);
    const [, expiry] = /^(\d+):pcsig$/.exec(entry.username);
    assert.ok(Number(expiry) >= before + 86400 - 5 && Number(expiry) <= before + 86400 + 5);
    assert.equal(entry.credential, createHmac('sha1', 's3cret').update(entry.username).digest('base64'));
  } finally {
    await srv.stop();
  }
});

test('bad ICE and web options stop the server at start-up with one line', async () => {
  const cases = [
    [['--ice-server', 'http://example.org'], /bad value 'http:\/\/example.org' for --ice-server: not a stun:/],
    [['--ice-server', 'stun:a b'], /--ice-server: a space, quote/],
    [['--ice-server', 'turn:turn.example.org'], /turn: or turns: --ice-server needs --ice-username/],
    [['--ice-username', 'u'], /--ice-username and --ice-credential go together/],
    [['--web-root', '/nonexistent/pcsig'], /--web-root \/nonexistent\/pcsig: No such file or directory/],
  ];
  for (const [args, want] of cases) {
    const r = await runServer(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, want);
  }
});

test('--no-web: every page path is a 404 again', async () => {
  const srv = await startServer(['--no-web']);
  try {
    for (const path of ['/', '/index.html', '/app.js', '/app.css', '/config.json']) {
      assert.equal((await request(srv.url, path)).status, 404, path);
      assert.equal((await request(srv.url, path, { method: 'HEAD' })).status, 405, path);
    }
    assert.equal((await request(srv.url, '/sign_in?x')).status, 200);
  } finally {
    await srv.stop();
  }
});

test('--web-root: a directory\'s regular files, and nothing outside it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'pcsig-web-root-'));
  const outside = mkdtempSync(join(tmpdir(), 'pcsig-outside-'));
  writeFileSync(join(outside, 'secret.txt'), 'secret');
  writeFileSync(join(dir, 'index.html'), '<!DOCTYPE html><title>custom</title>');
  mkdirSync(join(dir, 'sub'));
  writeFileSync(join(dir, 'sub', 'a.txt'), 'a');
  writeFileSync(join(dir, '.hidden'), 'hidden');
  writeFileSync(join(dir, 'sign_in'), 'not the protocol');
  writeFileSync(join(dir, 'big.txt'), Buffer.alloc((1 << 20) + 1, 'x'));
  symlinkSync(join(outside, 'secret.txt'), join(dir, 'link.txt'));
  symlinkSync(outside, join(dir, 'linkdir'));
  symlinkSync(join(dir, 'sub', 'a.txt'), join(dir, 'inside-link.txt'));
  const srv = await startServer(['--web-root', dir]);
  try {
    const page = await request(srv.url, '/');
    assert.equal(page.status, 200);
    assert.equal(page.body, '<!DOCTYPE html><title>custom</title>');
    assert.match(page.headers['content-security-policy'], /script-src 'self'/);
    const etag = page.headers.etag;
    assert.equal((await request(srv.url, '/', { headers: { 'If-None-Match': etag } })).status, 304);
    const a = await request(srv.url, '/sub/a.txt');
    assert.equal(a.status, 200);
    assert.equal(a.headers['content-type'], 'text/plain; charset=utf-8');
    assert.equal(a.body, 'a');
    // The built-in files are not served beside a --web-root.
    assert.equal((await request(srv.url, '/app.js')).status, 404);
    // Escapes and odd paths: all 404, nothing of outside/ ever sent.
    for (const path of ['/../' + outside.split('/').pop() + '/secret.txt', '/sub/../index.html',
      '/%2e%2e/etc/passwd', '/.hidden', '/link.txt', '/linkdir/secret.txt', '/inside-link.txt',
      '/sub', '/sub/', '//sub/a.txt', '/sub//a.txt', '/big.txt', '/sub\\a.txt', '/nope.html']) {
      const r = await request(srv.url, path);
      assert.equal(r.status, 404, path);
      assert.doesNotMatch(r.body, /secret|hidden/);
    }
    // A file named like a protocol path does not shadow it.
    const signIn = await request(srv.url, '/sign_in?x');
    assert.equal(signIn.status, 200);
    assert.match(signIn.body, /^x,\d+,1\n/);
    const head = await request(srv.url, '/sub/a.txt', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], '1');
    assert.equal((await request(srv.url, '/link.txt', { method: 'HEAD' })).status, 405);
    // /config.json comes from the server even with a --web-root.
    assert.deepEqual(JSON.parse((await request(srv.url, '/config.json')).body), { iceServers: [] });
  } finally {
    await srv.stop();
  }
});
