// The dashboard: backends (used/quota, health), the upload queue, transfer rates over the last
// hour, peers (lag, last seen), recent errors and queued repairs; live from /v1/events (SSE).
import { api, el, fmtAgo, fmtBytes, fmtPercent, fmtTime, toDate } from './api.js';
import { drawChart } from './chart.js';

const REFRESH_MIN_MS = 1500; // at most one status read per this, however many events arrive
const POLL_MS = 15000; // and at least one this often (ages, rates)
const FEED_MAX = 100;

const $ = (id) => document.getElementById(id);
let lastLoad = 0;
let pending = null;
const errorsSeen = [];

/** Entries of a list, or of a {name: record} map, as records with a `name`. */
function records(x) {
  if (!x) return [];
  if (Array.isArray(x)) return x;
  return Object.entries(x).map(([name, r]) => ({ name, ...(typeof r === 'object' ? r : { value: r }) }));
}

function stat(label, value, id) {
  return el('div', { class: 'stat' }, el('span', { class: 'muted' }, label), el('b', { id }, value));
}

function healthBadge(b) {
  const h = b.health ?? (b.healthy === false ? 'down' : b.healthy === true ? 'ok' : b.ok === false ? 'down' : 'ok');
  const text = typeof h === 'string' ? h : (h ? 'ok' : 'down');
  const cls = /^(ok|healthy|up)$/i.test(text) ? 'ok' : /^(slow|degraded|pending|full)$/i.test(text) ? 'warn' : 'bad';
  return el('span', { class: `badge ${cls}`, title: b.error || '' }, text);
}

function quota(used, q) {
  const bar = el('div', { class: 'bar' }, el('i'));
  const frac = q ? Math.min(1, used / q) : 0;
  bar.firstChild.style.width = q ? `${Math.max(1, Math.round(frac * 100))}%` : '0';
  if (frac > 0.95) bar.firstChild.classList.add('full');
  else if (frac > 0.8) bar.firstChild.classList.add('high');
  return el('div', { class: 'quota' }, bar,
    el('span', { class: 'muted' }, q ? `${fmtBytes(used)} of ${fmtBytes(q)} (${fmtPercent(frac)})` : `${fmtBytes(used)} · no quota`));
}

function renderNode(s) {
  const n = s.node || {};
  const id = n.id || n.node_id || '';
  const items = [
    el('div', { class: 'stat' }, el('span', { class: 'muted' }, 'Node'), el('code', { id: 'node-id', class: 'node-id', title: id }, id ? `${id.slice(0, 17)}…` : '—')),
    stat('Files', (n.files ?? s.files ?? '—').toLocaleString(), 'node-files'),
    stat('HTTP uploads open', (s.http_uploads ?? 0).toLocaleString(), 'node-uploads'),
    stat('Peers online', `${records(s.peers).filter((p) => p.connected).length} / ${records(s.peers).length}`, 'node-peers'),
  ];
  if (n.listen) items.push(stat('Peers connect at', n.listen, 'node-listen'));
  if (n.version) items.push(stat('Version', n.version, 'node-version'));
  if (n.since || n.started) items.push(stat('Up since', fmtAgo(n.since || n.started).replace(' ago', ''), 'node-up'));
  $('node-stats').replaceChildren(...items);
}

function renderBackends(s) {
  const list = records(s.backends);
  if (!list.length) {
    $('backends').replaceChildren(el('p', { class: 'muted' }, 'No backends: every pack stays on this node. Add one with ', el('code', {}, 'mosaic backend add'), '.'));
    return;
  }
  const rows = list.map((b) => el('tr', { 'data-backend': b.name },
    el('td', {}, el('b', {}, b.name), b.kind || b.type ? el('div', { class: 'muted' }, b.kind || b.type) : ''),
    el('td', {}, quota(b.used ?? 0, b.quota ?? null)),
    el('td', {}, healthBadge(b)),
    el('td', { class: 'num' }, fmtBytes((b.pending && b.pending.bytes) ?? b.pending_bytes ?? 0), el('div', { class: 'muted' }, 'queued'))));
  $('backends').replaceChildren(el('table', { class: 'plain' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Backend'), el('th', {}, 'Used'), el('th', {}, 'Health'), el('th', { class: 'num' }, 'Queue'))),
    el('tbody', {}, rows)));
}

function renderQueue(s) {
  const q = s.upload_queue || s.queue || {};
  const per = records(q.backends || s.pending || {});
  const packs = q.packs ?? per.reduce((a, p) => a + (p.packs || 0), 0);
  const bytes = q.bytes ?? per.reduce((a, p) => a + (p.bytes || 0), 0);
  const tus = records(s.uploads || q.uploads || []).filter((u) => u && u.length !== undefined);
  const items = [el('div', { class: 'stats' },
    stat('Packs to send', packs.toLocaleString(), 'queue-packs'),
    stat('Bytes to send', fmtBytes(bytes), 'queue-bytes'))];
  if (tus.length) {
    items.push(el('h3', { class: 'muted' }, 'Uploads in progress'));
    items.push(el('table', { class: 'plain', id: 'tus-uploads' }, el('tbody', {}, tus.slice(0, 10).map((u) => el('tr', {},
      el('td', {}, u.name || u.id), el('td', { class: 'num' }, `${fmtPercent(u.length ? u.offset / u.length : 1)} of ${fmtBytes(u.length)}`))))));
  }
  $('queue').replaceChildren(...items);
}

function renderRepairs(s) {
  const r = s.repairs ?? {};
  const queued = typeof r === 'number' ? r : (r.queued ?? s.repairs_queued ?? 0);
  const under = typeof r === 'number' ? (s.under_replicated_packs ?? 0) : (r.under_replicated_packs ?? s.under_replicated_packs ?? 0);
  const want = (typeof r === 'object' && r.copies_wanted) ?? s.copies_wanted;
  $('repairs').replaceChildren(el('div', { class: 'stats' },
    stat('Queued repairs', queued.toLocaleString(), 'repairs-queued'),
    stat('Packs short of copies', under.toLocaleString(), 'repairs-under')),
  want ? el('p', { class: 'muted' }, `Each pack should have ${want} cop${want === 1 ? 'y' : 'ies'} on backends.`) : '');
}

function renderPeers(s) {
  const list = records(s.peers);
  if (!list.length) {
    $('peers').replaceChildren(el('p', { class: 'muted' }, 'No peers. Link nodes with ', el('code', {}, 'mosaic peer add'), '.'));
    return;
  }
  $('peers').replaceChildren(el('table', { class: 'plain' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Peer'), el('th', {}, 'State'), el('th', { class: 'num' }, 'Lag'), el('th', {}, 'Last seen'))),
    el('tbody', {}, list.map((p) => el('tr', { 'data-peer': p.id || p.name },
      el('td', {}, el('code', { title: p.id || p.name }, (p.id || p.name || '').slice(0, 17)), p.addr ? el('div', { class: 'muted' }, p.addr) : ''),
      el('td', {}, el('span', { class: `badge ${p.connected ? 'ok' : (p.error ? 'bad' : '')}`, title: p.error || '' }, p.connected ? 'connected' : 'offline')),
      el('td', { class: 'num' }, p.lag === undefined || p.lag === null ? '—' : `${Number(p.lag).toLocaleString()} entries`),
      el('td', { class: 'muted' }, p.last_seen ? fmtAgo(p.last_seen) : 'never'))))));
}

function renderErrors(s) {
  const fromStatus = records(s.recent_errors || s.errors || []).map((e) => ({
    at: toDate(e.time_ns ?? e.at ?? e.time)?.getTime() ?? 0, text: `${e.kind || e.what || 'error'}${e.backend ? ` on ${e.backend}` : ''}: ${e.error || e.message || ''}`,
  }));
  const all = [...fromStatus, ...errorsSeen].sort((a, b) => Number(b.at) - Number(a.at)).slice(0, 30);
  $('errors').replaceChildren(...(all.length ? all.map((e) => el('li', {}, el('time', {}, fmtTime(e.at)), el('span', {}, e.text)))
    : [el('li', { class: 'muted' }, 'No errors in the last hour.')]));
}

async function renderChart() {
  try {
    const h = await api('/ui/activity');
    const toPoints = (arr) => arr.map((v, i) => ({ t: h.start + (i + 0.5) * h.bucket, v: v / h.bucket }));
    const t1 = h.start + h.bucket * h.up.length;
    drawChart($('chart'), [
      { cls: 'up', area: true, points: toPoints(h.up) },
      { cls: 'down', points: toPoints(h.down) },
    ], h.start, t1);
    const total = h.up.reduce((a, b) => a + b, 0);
    $('chart').dataset.upBytes = String(total);
    $('chart').setAttribute('aria-label', `Transfer rate over the last hour: ${fmtBytes(total)} sent to backends, ${fmtBytes(h.down.reduce((a, b) => a + b, 0))} fetched`);
  } catch (e) {
    $('chart').replaceChildren(el('p', { class: 'muted' }, `No transfer history: ${e.message}`));
  }
}

async function load() {
  lastLoad = Date.now();
  try {
    const s = await api('/v1/status');
    renderNode(s);
    renderBackends(s);
    renderQueue(s);
    renderRepairs(s);
    renderPeers(s);
    renderErrors(s);
    $('updated').textContent = `Updated ${fmtTime(Date.now())}`;
    document.body.dataset.loads = String(Number(document.body.dataset.loads || 0) + 1);
  } catch (e) {
    $('updated').textContent = `Cannot read the node's status: ${e.message}`;
  }
  renderChart();
}

/** Reload soon, at most once per REFRESH_MIN_MS. */
function soon() {
  if (pending) return;
  const wait = Math.max(0, REFRESH_MIN_MS - (Date.now() - lastLoad));
  pending = setTimeout(() => { pending = null; load(); }, wait);
}

function describe(ev) {
  switch (ev.kind) {
    case 'put': return `Stored ${ev.name || ev.hash?.slice(0, 12) || 'a file'} (${fmtBytes(ev.size)})${ev.new === false ? ', nothing new' : ''}`;
    case 'rm': return `Removed ${ev.name}${ev.type === 'folder' ? ' (folder)' : ''}`;
    case 'mv': return `Moved ${ev.from} to ${ev.to}`;
    case 'mkdir': return `New folder ${ev.path}`;
    case 'upload': return `Upload ${ev.name || ev.id}: ${ev.state}${ev.length ? ` (${fmtPercent(ev.offset / ev.length)})` : ''}`;
    case 'peer': return `Peer ${(ev.peer || '').slice(0, 16)} ${ev.connected ? 'connected' : 'disconnected'}`;
    case 'error': return `Error${ev.what ? ` (${ev.what})` : ''}: ${ev.message || ''}`;
    case 'changed': return 'The index changed';
    case 'lagged': return 'Missed some events (the stream fell behind)';
    default: return `${ev.kind}`;
  }
}

function feed(ev) {
  if (ev.kind === 'upload' && ev.state === 'progress') return; // too chatty for the feed
  const list = $('activity');
  $('activity-empty')?.remove();
  list.prepend(el('li', { 'data-kind': ev.kind }, el('time', {}, fmtTime(ev.at ? ev.at * 1000 : Date.now())), el('span', {}, describe(ev))));
  while (list.children.length > FEED_MAX) list.lastChild.remove();
}

function connect() {
  const src = new EventSource('/v1/events', { withCredentials: true });
  const dot = $('live-dot');
  const text = $('live-text');
  src.onopen = () => { dot.classList.add('on'); text.textContent = 'live'; };
  src.onerror = () => {
    dot.classList.remove('on');
    text.textContent = 'reconnecting…';
    if (src.readyState === EventSource.CLOSED) { // refused (signed out?): ask once, then retry
      text.textContent = 'offline';
      load().finally(() => setTimeout(connect, 5000));
    }
  };
  const handle = (msg) => {
    let ev;
    try { ev = JSON.parse(msg.data); } catch { return; }
    ev.kind = ev.kind || msg.type;
    if (ev.kind === 'hello' || ev.kind === 'ping') return;
    if (ev.kind === 'error') errorsSeen.push({ at: (ev.at || Date.now() / 1000) * 1000, text: describe(ev) });
    feed(ev);
    soon();
  };
  src.onmessage = handle;
  for (const k of ['put', 'rm', 'mv', 'mkdir', 'upload', 'peer', 'error', 'changed', 'lagged', 'pin', 'warm']) {
    src.addEventListener(k, handle);
  }
}

/** What happened before the page opened (the bus keeps the last events). */
async function seed() {
  try {
    const evs = await api('/ui/events/recent');
    for (const ev of evs) {
      if (ev.kind === 'error') errorsSeen.push({ at: (ev.at || 0) * 1000, text: describe(ev) });
      feed(ev);
    }
  } catch { /* the live stream still comes */ }
}

seed().then(() => { load(); connect(); });
setInterval(() => { if (Date.now() - lastLoad >= POLL_MS - 100) load(); }, POLL_MS);
