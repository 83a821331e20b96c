// pcsig's browser page: the peerconnection signaling protocol and a WebRTC
// call, in one plain module (no framework, no build step).
//
// The protocol, as the original peerconnection_client speaks it:
//   GET  /sign_in?NAME           -> "Pragma: MY_ID", body: one "name,id,connected"
//                                   line per member (mine first)
//   GET  /wait?peer_id=MY_ID     -> one item: "Pragma: MY_ID" = a member joined
//                                   or left (one line; empty: nothing happened),
//                                   "Pragma: OTHER_ID" = a message from OTHER_ID
//   POST /message?peer_id=MY_ID&to=ID   the body is relayed as is
//   GET  /sign_out?peer_id=MY_ID
// A server started with --auth-token or --auth-token-file also wants
// "Authorization: Bearer TOKEN" on /sign_in (only there): 401 without it.
// A call is signaled with the conductor's JSON: {"type":"offer","sdp":...},
// {"type":"answer","sdp":...}, {"candidate":...,"sdpMid":...,"sdpMLineIndex":...},
// and hung up with the three bytes BYE. Anything else is shown as chat.
// Everything a peer sends is shown with textContent: never parsed as HTML.

const $ = (id) => document.getElementById(id);

const ui = {
  server: $('server-url'), name: $('name'), signIn: $('sign-in'), signOut: $('sign-out'),
  token: $('token'), remember: $('remember-token'),
  status: $('status'), peers: $('peers'), noPeers: $('no-peers'), selected: $('selected-peer'),
  call: $('call'), hangUp: $('hang-up'), synthetic: $('synthetic'), autoAnswer: $('auto-answer'),
  incoming: $('incoming'), incomingFrom: $('incoming-from'), accept: $('accept'), decline: $('decline'),
  callState: $('call-state'), pcState: $('pc-state'),
  localVideo: $('local-video'), remoteVideo: $('remote-video'),
  bitrate: $('stat-bitrate'), rtt: $('stat-rtt'), codec: $('stat-codec'), frames: $('stat-frames'),
  log: $('chat-log'), chatForm: $('chat-form'), chatInput: $('chat-input'), chatSend: $('chat-send'),
  dcForm: $('dc-form'), dcInput: $('dc-input'), dcSend: $('dc-send'),
};

const state = {
  server: '',          // base URL, no trailing '/'
  myId: 0,
  token: null,         // --secure-ids: the X-Pcsig-Token our requests carry
  accessToken: '',     // --auth-token: what /sign_in sends as "Authorization: Bearer"
  signedIn: false,     // the user wants to be signed in (also while reconnecting)
  session: 0,          // bumped on each sign-in: stale loops stop
  waitAbort: null,
  peers: new Map(),    // id -> name (raw, as the server sends it)
  selected: 0,
  sendChain: Promise.resolve(), // messages leave in order (offer before candidates)
  iceServers: [],
  call: null,          // the call in progress (newCall)
  offer: null,         // an offer waiting for Accept: {from, sdp, candidates}
};

// ---- small helpers -------------------------------------------------------

// Names are raw query bytes on the wire; the page sends them percent-encoded,
// so show them decoded when they decode. Either way they become text only.
function displayName(raw) {
  try { return decodeURIComponent(raw); } catch { return raw; }
}

function setStatus(st, text) {
  ui.status.dataset.state = st;
  delete ui.status.dataset.attempts;
  ui.status.textContent = text;
}

function logLine(kind, who, text) {
  const li = document.createElement('li');
  li.dataset.kind = kind;
  if (who) {
    const w = document.createElement('span');
    w.className = 'who';
    w.textContent = who;
    li.append(w);
  }
  const t = document.createElement('span');
  t.className = 'text';
  t.textContent = text;
  li.append(t);
  ui.log.append(li);
  ui.log.scrollTop = ui.log.scrollHeight;
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

function url(path) { return state.server + path; }

// The access token lives in this page's memory only, unless the user ticks
// "remember": then in sessionStorage, so that a reload of this tab keeps it
// while closing the tab drops it, and no other tab or site sees it.
// localStorage would keep it on disk for good, and a URL (query or
// fragment) would put it in the history, logs and Referer headers: never.
const TOKEN_KEY = 'pcsig.accessToken';

function authHeader() {
  return state.accessToken ? { Authorization: `Bearer ${state.accessToken}` } : {};
}

// A 401 of /sign_in: the page says which of the two it is and stops.
class AuthError extends Error {
  constructor(refused) {
    super(refused ? 'token refused: the server did not accept this access token'
      : 'this server needs an access token: enter it under "Access token"');
    this.state = refused ? 'auth-refused' : 'auth-needed';
  }
}

function crossOrigin() {
  try { return new URL(state.server).origin !== location.origin; } catch { return true; }
}

function tokenHeader() { return state.token ? { 'X-Pcsig-Token': state.token } : {}; }

// ---- the protocol ----------------------------------------------------------

// "name,id,connected" lines: the name may hold anything but ',' and newlines.
function parsePeerLines(body) {
  const out = [];
  for (const line of body.split('\n')) {
    const parts = line.split(',');
    if (parts.length < 3) continue;
    const connected = parts.pop();
    const id = Number(parts.pop());
    if (!Number.isSafeInteger(id) || id <= 0) continue;
    out.push({ name: parts.join(','), id, connected: connected.trim() === '1' });
  }
  return out;
}

// Sign in for session (state.session when it started: a sign-out or a newer
// sign-in meanwhile makes it stale) and start its /wait loop.
async function signIn(session) {
  const name = ui.name.value.trim();
  let res;
  try {
    res = await fetch(url('/sign_in?' + encodeURIComponent(name)), {
      cache: 'no-store', headers: authHeader(),
    });
  } catch (e) {
    // Another origin with a token: the browser asks first (a CORS preflight,
    // OPTIONS) whether it may send Authorization; a server that does not
    // allow it looks like one that cannot be reached.
    const why = state.accessToken && crossOrigin()
      ? ' (or it does not allow the Authorization header from this origin)' : '';
    throw new Error(`cannot reach ${state.server}${why}`);
  }
  if (res.status === 401) throw new AuthError(state.accessToken !== '');
  if (!res.ok) throw new Error(`sign-in: ${res.status} ${res.statusText}`);
  const id = Number(res.headers.get('Pragma'));
  if (!Number.isSafeInteger(id) || id <= 0) throw new Error('sign-in: no Pragma id in the answer');
  const entries = parsePeerLines(await res.text());
  if (session !== state.session) return;
  state.myId = id;
  // A server started with --secure-ids gives each member a secret token that
  // its later requests must carry; the stock server sends none.
  state.token = res.headers.get('X-Pcsig-Token');
  state.peers.clear();
  for (const e of entries) if (e.id !== id && e.connected) state.peers.set(e.id, e.name);
  renderPeers();
  setStatus('signed-in', `signed in as ${displayName(entries[0]?.name ?? name)} (id ${id})`);
  waitLoop(session);
}

// One /wait at a time, as the stock client: each answer is one item.
async function waitLoop(session) {
  while (state.signedIn && session === state.session) {
    const abort = new AbortController();
    state.waitAbort = abort;
    let res, body;
    try {
      res = await fetch(url(`/wait?peer_id=${state.myId}`), {
        cache: 'no-store', signal: abort.signal, headers: tokenHeader(),
      });
      body = await res.text();
    } catch (e) {
      if (abort.signal.aborted || session !== state.session) return;
      reconnect(session, 'the server went away');
      return;
    }
    if (session !== state.session) return;
    if (res.status === 409) continue; // displaced by a newer /wait of ours
    if (!res.ok) { // 500 Sorry: the server no longer knows us (restarted, timed out)
      reconnect(session, `wait answered ${res.status}`);
      return;
    }
    const from = Number(res.headers.get('Pragma'));
    if (from === state.myId) onNotification(body);
    else if (from > 0) onMessage(from, body);
  }
}

// Sign in again until it works: after a server restart the page carries on.
async function reconnect(session, why) {
  if (session !== state.session || !state.signedIn) return;
  setStatus('reconnecting', `reconnecting (${why})`);
  state.peers.clear();
  renderPeers();
  if (state.call) endCall('the signaling server went away', false);
  let attempt = 0;
  for (let delay = 250; ; delay = Math.min(delay * 2, 1500)) {
    await sleep(delay);
    if (!state.signedIn || session !== state.session) return;
    try {
      await signIn(session);
      if (session === state.session) logLine('info', '', 'signed in again');
      return;
    } catch (e) {
      // The restarted server wants another token: retrying cannot help.
      if (e instanceof AuthError) {
        if (session !== state.session) return;
        state.signedIn = false;
        state.session++;
        setStatus(e.state, `signed out: ${e.message}`);
        updateButtons();
        ui.token.focus();
        return;
      }
      attempt++;
      ui.status.dataset.attempts = String(attempt);
      ui.status.textContent = `reconnecting (${why}; ${attempt} attempts so far)`;
    }
  }
}

function onNotification(body) {
  for (const e of parsePeerLines(body)) {
    if (e.id === state.myId) continue;
    if (e.connected) state.peers.set(e.id, e.name);
    else {
      state.peers.delete(e.id);
      if (state.call && state.call.peer === e.id) endCall('the peer left', false);
    }
  }
  renderPeers();
}

// Messages leave one after another so that the peer sees them in order.
function send(to, text) {
  const job = state.sendChain.then(async () => {
    const res = await fetch(url(`/message?peer_id=${state.myId}&to=${to}`), {
      method: 'POST', headers: { 'Content-Type': 'text/plain', ...tokenHeader() }, body: text,
      cache: 'no-store',
    });
    if (!res.ok) throw new Error(`message to ${to}: ${res.status} ${(await res.text()).trim()}`);
  });
  state.sendChain = job.catch(() => {});
  return job;
}

async function signOut() {
  state.signedIn = false;
  state.session++;
  if (state.call) await hangUp();
  state.waitAbort?.abort();
  const id = state.myId;
  state.myId = 0;
  state.peers.clear();
  renderPeers();
  setStatus('signed-out', 'signed out');
  updateButtons();
  const headers = tokenHeader();
  state.token = null;
  if (id) await fetch(url(`/sign_out?peer_id=${id}`), { cache: 'no-store', headers }).catch(() => {});
}

// ---- what peers send ---------------------------------------------------------

function onMessage(from, body) {
  if (body === 'BYE') {
    if (state.call && state.call.peer === from) endCall('the peer hung up', false);
    else if (state.call === null && ui.incoming.dataset.from === String(from)) hideIncoming();
    return;
  }
  let msg = null;
  try { msg = JSON.parse(body); } catch { /* plain text: chat */ }
  if (msg && typeof msg === 'object' && (msg.type === 'offer' || msg.type === 'answer') &&
      typeof msg.sdp === 'string') {
    onDescription(from, msg).catch((e) => logLine('info', '', `call failed: ${e.message}`));
    return;
  }
  if (msg && typeof msg === 'object' && typeof msg.candidate === 'string') {
    onCandidate(from, msg);
    return;
  }
  logLine('chat', `${peerName(from)}:`, body);
}

function peerName(id) {
  return state.peers.has(id) ? displayName(state.peers.get(id)) : `peer ${id}`;
}

// ---- the call ---------------------------------------------------------------------

function setCallState(st) {
  ui.callState.dataset.state = st;
  ui.callState.textContent = st;
  updateButtons();
}

// "?video=WxH@FPS" in the page's address (e.g. /?video=160x120@10): the
// size and frame rate asked of the camera and drawn by the synthetic
// canvas (default: the camera's own; the canvas 320x240 at 30). The
// browser tests ask for a small one: their calls check that media flows,
// and every pixel encoded and decoded is CPU they share with the others.
const videoSize = (() => {
  const m = /^(\d{2,4})x(\d{2,4})@(\d{1,2})$/.exec(new URLSearchParams(location.search).get('video') ?? '');
  return m && Number(m[3]) > 0 ? { width: Number(m[1]), height: Number(m[2]), frameRate: Number(m[3]) } : null;
})();

// A canvas animation and an oscillator: a call without camera or microphone.
function syntheticStream() {
  const canvas = document.createElement('canvas');
  canvas.width = videoSize?.width ?? 320;
  canvas.height = videoSize?.height ?? 240;
  const fps = videoSize?.frameRate ?? 30;
  const g = canvas.getContext('2d');
  g.scale(canvas.width / 320, canvas.height / 240); // drawn in 320x240 units
  const t0 = performance.now();
  const draw = () => {
    const t = (performance.now() - t0) / 1000;
    g.fillStyle = `hsl(${(t * 40) % 360} 60% 35%)`;
    g.fillRect(0, 0, 320, 240);
    g.fillStyle = '#fff';
    g.beginPath();
    g.arc(160 + 110 * Math.cos(t * 2), 120 + 70 * Math.sin(t * 3), 24, 0, 2 * Math.PI);
    g.fill();
    g.font = '20px sans-serif';
    g.fillText(`pcsig ${t.toFixed(1)} s`, 12, 30);
  };
  draw();
  const timer = setInterval(draw, 1000 / fps); // timers, not rAF: keeps going in a hidden tab
  const stream = canvas.captureStream(fps);
  let audio = null;
  try {
    audio = new AudioContext();
    const osc = audio.createOscillator();
    const gain = audio.createGain();
    osc.frequency.value = 440;
    gain.gain.value = 0.05;
    const dest = audio.createMediaStreamDestination();
    osc.connect(gain).connect(dest);
    osc.start();
    for (const t of dest.stream.getAudioTracks()) stream.addTrack(t);
  } catch { /* video only */ }
  stream.pcsigStop = () => { clearInterval(timer); audio?.close(); };
  return stream;
}

async function localStream() {
  if (!ui.synthetic.checked && navigator.mediaDevices?.getUserMedia) {
    try {
      return await navigator.mediaDevices.getUserMedia({ video: videoSize ?? true, audio: true });
    } catch (e) {
      logLine('info', '', `no camera or microphone (${e.name}): synthetic media instead`);
    }
  }
  return syntheticStream();
}

function newCall(peer) {
  const pc = new RTCPeerConnection({ iceServers: state.iceServers });
  const call = {
    peer, pc, dc: null, stream: null, pendingCandidates: [], statsTimer: 0, last: null,
    described: false, outCandidates: [], // ours wait until our offer or answer left
  };
  pc.onicecandidate = (ev) => {
    if (!ev.candidate || state.call !== call) return;
    const text = JSON.stringify({
      candidate: ev.candidate.candidate, sdpMid: ev.candidate.sdpMid,
      sdpMLineIndex: ev.candidate.sdpMLineIndex,
    });
    if (call.described) send(peer, text).catch(() => {});
    else call.outCandidates.push(text);
  };
  pc.ontrack = (ev) => {
    if (ui.remoteVideo.srcObject !== ev.streams[0]) {
      ui.remoteVideo.srcObject = ev.streams[0] ?? new MediaStream([ev.track]);
      ui.remoteVideo.play().catch(() => { ui.remoteVideo.muted = true; ui.remoteVideo.play().catch(() => {}); });
    }
  };
  pc.onconnectionstatechange = () => {
    ui.pcState.textContent = pc.connectionState;
    if (state.call !== call) return;
    if (pc.connectionState === 'connected') setCallState('connected');
    if (pc.connectionState === 'failed') endCall('the connection failed', true);
  };
  pc.ondatachannel = (ev) => attachChannel(call, ev.channel);
  call.statsTimer = setInterval(() => updateStats(call), 1000);
  state.call = call;
  return call;
}

// Our offer or answer first, then the candidates gathered meanwhile.
function sendDescription(call, desc) {
  const sent = send(call.peer, JSON.stringify({ type: desc.type, sdp: desc.sdp }));
  call.described = true;
  for (const text of call.outCandidates.splice(0)) send(call.peer, text).catch(() => {});
  return sent;
}

function attachChannel(call, dc) {
  call.dc = dc;
  dc.onopen = () => { if (state.call === call) updateButtons(); };
  dc.onclose = () => { if (state.call === call) updateButtons(); };
  dc.onmessage = (ev) => logLine('dc', `${peerName(call.peer)} (data channel):`, String(ev.data));
}

async function addMedia(call) {
  call.stream = await localStream();
  if (state.call !== call) { stopStream(call.stream); throw new Error('call ended'); }
  ui.localVideo.srcObject = call.stream;
  for (const t of call.stream.getTracks()) call.pc.addTrack(t, call.stream);
}

async function startCall() {
  const peer = state.selected;
  if (!peer || state.call) return;
  const call = newCall(peer);
  setCallState('calling');
  attachChannel(call, call.pc.createDataChannel('chat'));
  await addMedia(call);
  const offer = await call.pc.createOffer();
  await call.pc.setLocalDescription(offer);
  await sendDescription(call, offer);
}

async function onDescription(from, msg) {
  if (msg.type === 'answer') {
    const call = state.call;
    if (!call || call.peer !== from) return;
    // Before the awaits: the connection may well be up by the time they end.
    setCallState('connecting');
    await call.pc.setRemoteDescription({ type: 'answer', sdp: msg.sdp });
    await flushCandidates(call);
    return;
  }
  // An offer: busy, ring, or answer at once.
  if (state.call || !ui.incoming.hidden) {
    send(from, 'BYE').catch(() => {});
    return;
  }
  state.offer = { from, sdp: msg.sdp, candidates: [] };
  if (ui.autoAnswer.checked) {
    await acceptCall();
    return;
  }
  ui.incoming.dataset.from = String(from);
  ui.incomingFrom.textContent = peerName(from);
  ui.incoming.hidden = false;
  setCallState('ringing');
}

function hideIncoming() {
  ui.incoming.hidden = true;
  delete ui.incoming.dataset.from;
  state.offer = null;
  if (!state.call) setCallState('idle');
}

async function acceptCall() {
  const offer = state.offer;
  if (!offer) return;
  ui.incoming.hidden = true;
  delete ui.incoming.dataset.from;
  state.offer = null;
  const call = newCall(offer.from);
  call.pendingCandidates.push(...offer.candidates);
  select(offer.from);
  setCallState('connecting');
  await call.pc.setRemoteDescription({ type: 'offer', sdp: offer.sdp });
  await addMedia(call);
  const answer = await call.pc.createAnswer();
  await call.pc.setLocalDescription(answer);
  await sendDescription(call, answer);
  await flushCandidates(call);
}

function declineCall() {
  const offer = state.offer;
  hideIncoming();
  if (offer) send(offer.from, 'BYE').catch(() => {});
}

// Candidates that come before the remote description wait for it.
function onCandidate(from, msg) {
  const cand = { candidate: msg.candidate, sdpMid: msg.sdpMid ?? null, sdpMLineIndex: msg.sdpMLineIndex ?? null };
  if (state.offer && state.offer.from === from) { state.offer.candidates.push(cand); return; }
  const call = state.call;
  if (!call || call.peer !== from) return;
  if (!call.pc.remoteDescription) { call.pendingCandidates.push(cand); return; }
  call.pc.addIceCandidate(cand).catch((e) => logLine('info', '', `bad candidate: ${e.message}`));
}

async function flushCandidates(call) {
  const list = call.pendingCandidates.splice(0);
  for (const c of list) await call.pc.addIceCandidate(c).catch(() => {});
}

function stopStream(stream) {
  if (!stream) return;
  for (const t of stream.getTracks()) t.stop();
  stream.pcsigStop?.();
}

function endCall(why, sendBye) {
  const call = state.call;
  if (!call) return;
  state.call = null;
  if (sendBye) send(call.peer, 'BYE').catch(() => {});
  clearInterval(call.statsTimer);
  call.pc.close();
  stopStream(call.stream);
  ui.localVideo.srcObject = null;
  ui.remoteVideo.srcObject = null;
  ui.pcState.textContent = 'closed';
  logLine('info', '', `call ended: ${why}`);
  setCallState('ended');
}

async function hangUp() { endCall('you hung up', true); }

// Bitrate in, round-trip time and codecs, from getStats once a second.
async function updateStats(call) {
  if (state.call !== call) return;
  const report = await call.pc.getStats();
  let bytes = 0, frames = 0, rtt = null;
  const codecs = new Set();
  report.forEach((s) => {
    if (s.type === 'inbound-rtp') {
      bytes += s.bytesReceived ?? 0;
      if (s.kind === 'video') frames += s.framesDecoded ?? 0;
      const c = s.codecId && report.get(s.codecId);
      if (c) codecs.add(c.mimeType.replace(/^(video|audio)\//, ''));
    }
    if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && s.currentRoundTripTime !== undefined) {
      rtt = s.currentRoundTripTime;
    }
  });
  const now = performance.now();
  if (call.last) {
    const kbps = ((bytes - call.last.bytes) * 8) / (now - call.last.t);
    ui.bitrate.textContent = `${kbps.toFixed(0)} kbit/s`;
  }
  call.last = { bytes, t: now };
  ui.rtt.textContent = rtt === null ? '-' : `${(rtt * 1000).toFixed(1)} ms`;
  ui.codec.textContent = codecs.size ? [...codecs].join(', ') : '-';
  ui.frames.textContent = String(frames);
}

// ---- the page ---------------------------------------------------------------------

function select(id) {
  state.selected = id;
  renderPeers();
}

function renderPeers() {
  if (state.selected && !state.peers.has(state.selected)) state.selected = 0;
  const items = [];
  for (const [id, name] of state.peers) {
    const li = document.createElement('li');
    const b = document.createElement('button');
    b.type = 'button';
    b.dataset.peerId = String(id);
    b.setAttribute('aria-pressed', String(id === state.selected));
    b.textContent = `${displayName(name)} (${id})`;
    b.addEventListener('click', () => select(id));
    li.append(b);
    items.push(li);
  }
  ui.peers.replaceChildren(...items);
  ui.noPeers.hidden = state.peers.size > 0;
  ui.selected.textContent = state.selected ? peerName(state.selected) : 'nobody';
  updateButtons();
}

function updateButtons() {
  const on = state.signedIn;
  const inCall = state.call !== null;
  ui.signIn.disabled = on;
  ui.signOut.disabled = !on;
  ui.server.disabled = on;
  ui.name.disabled = on;
  ui.token.disabled = ui.remember.disabled = on;
  ui.call.disabled = !on || !state.selected || inCall || !ui.incoming.hidden;
  ui.hangUp.disabled = !inCall;
  ui.chatInput.disabled = ui.chatSend.disabled = !on || !state.selected;
  const dcOpen = inCall && state.call.dc && state.call.dc.readyState === 'open';
  ui.dcInput.disabled = ui.dcSend.disabled = !dcOpen;
}

async function loadConfig() {
  try {
    const res = await fetch(url('/config.json'), { cache: 'no-store' });
    if (res.ok) {
      const cfg = await res.json();
      if (Array.isArray(cfg.iceServers)) state.iceServers = cfg.iceServers;
    }
  } catch { /* no config: no ICE servers, as on a LAN */ }
}

ui.signIn.addEventListener('click', async () => {
  state.server = ui.server.value.trim().replace(/\/+$/, '');
  const token = ui.token.value.trim();
  // A header value must be Latin-1; tokens are printable ASCII.
  if (!/^[\x20-\x7e]*$/.test(token)) {
    setStatus('auth-refused', 'the access token may hold only printable ASCII characters');
    return;
  }
  state.accessToken = token;
  rememberToken();
  state.signedIn = true;
  updateButtons();
  setStatus('signing-in', 'signing in...');
  const session = ++state.session;
  await loadConfig();
  try {
    await signIn(session);
  } catch (e) {
    if (session !== state.session) return;
    state.signedIn = false;
    setStatus(e instanceof AuthError ? e.state : 'signed-out', `could not sign in: ${e.message}`);
    updateButtons();
    if (e instanceof AuthError) ui.token.focus();
  }
});

function rememberToken() {
  try {
    if (ui.remember.checked && state.accessToken) sessionStorage.setItem(TOKEN_KEY, state.accessToken);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: memory only */ }
}
ui.remember.addEventListener('change', rememberToken);
ui.signOut.addEventListener('click', () => { signOut(); });
ui.call.addEventListener('click', () => {
  startCall().catch((e) => { logLine('info', '', `call failed: ${e.message}`); endCall(e.message, true); });
});
ui.hangUp.addEventListener('click', () => { hangUp(); });
ui.accept.addEventListener('click', () => {
  acceptCall().catch((e) => { logLine('info', '', `call failed: ${e.message}`); endCall(e.message, true); });
});
ui.decline.addEventListener('click', declineCall);
ui.chatForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.chatInput.value;
  const to = state.selected;
  if (!text || !to) return;
  ui.chatInput.value = '';
  send(to, text).then(() => logLine('chat', 'me:', text),
    (e) => logLine('info', '', `not sent: ${e.message}`));
});
ui.dcForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const text = ui.dcInput.value;
  const dc = state.call?.dc;
  if (!text || !dc || dc.readyState !== 'open') return;
  ui.dcInput.value = '';
  dc.send(text);
  logLine('dc', 'me (data channel):', text);
});
window.addEventListener('pagehide', () => {
  // Best effort, so that the others see us leave at once.
  // A beacon carries no header: the token (if any) goes in the query.
  const token = state.token ? `&token=${encodeURIComponent(state.token)}` : '';
  if (state.signedIn && state.myId) navigator.sendBeacon?.(url(`/sign_out?peer_id=${state.myId}${token}`));
});

ui.server.value = /^https?:$/.test(location.protocol) ? location.origin : 'http://localhost:8888';
try {
  const kept = sessionStorage.getItem(TOKEN_KEY);
  if (kept) { ui.token.value = kept; ui.remember.checked = true; }
} catch { /* storage disabled */ }
ui.name.value = `browser-${Math.floor(Math.random() * 9000) + 1000}`;
updateButtons();

// For tests and the curious (devtools): the live call's objects.
window.pcsig = {
  get id() { return state.myId; },
  get pc() { return state.call?.pc ?? null; },
  get dc() { return state.call?.dc ?? null; },
};
