// Resumable uploads through the node's tus 1.0.0 endpoint (/v1/uploads/), with a panel that
// shows each file's progress, pause and resume, and what dedup saved. The upload URL of every
// unfinished file is kept in localStorage (keyed by path, size and mtime), so after a page
// reload choosing the same file again continues where the node's offset says.
import { api, csrf, el, fmtBytes, fmtRate, icon, toast } from './api.js';

const ENDPOINT = '/v1/uploads/';
const TUS = '1.0.0';
const PART = 8 << 20; // bytes per PATCH
const PARALLEL = 6; // files uploaded at once (a browser opens at most 6 connections to a host)
const SHOWN_DONE = 50; // finished files kept in the panel (older ones fold into the count)
const STORE_PREFIX = 'mosaic.tus:';

/** The key an unfinished upload is remembered by. */
function storeKey(path, file) {
  return `${STORE_PREFIX}${path}|${file.size}|${file.lastModified}`;
}

function remembered() {
  const out = [];
  for (let i = 0; i < localStorage.length; i += 1) {
    const k = localStorage.key(i);
    if (!k.startsWith(STORE_PREFIX)) continue;
    try { out.push({ key: k, ...JSON.parse(localStorage.getItem(k)) }); } catch { localStorage.removeItem(k); }
  }
  return out;
}

function b64(text) {
  const bytes = new TextEncoder().encode(text);
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/** An XHR (fetch cannot report upload progress): resolves to the XHR once it is done. */
function send(method, url, headers, body, onProgress, holder) {
  return new Promise((resolve, reject) => {
    const x = new XMLHttpRequest();
    holder.xhr = x;
    x.open(method, url);
    x.withCredentials = true;
    for (const [k, v] of Object.entries(headers)) x.setRequestHeader(k, v);
    if (onProgress) x.upload.onprogress = (ev) => onProgress(ev.loaded);
    x.onload = () => { holder.xhr = null; resolve(x); };
    x.onerror = () => { holder.xhr = null; reject(new Error('network error')); };
    x.onabort = () => { holder.xhr = null; reject(Object.assign(new Error('paused'), { paused: true })); };
    x.send(body);
  });
}

function problem(x) {
  try {
    const d = JSON.parse(x.responseText);
    return d.detail || d.title || `HTTP ${x.status}`;
  } catch {
    return `HTTP ${x.status}`;
  }
}

/** One file's upload: states queued, running, paused, done, failed. */
class TusUpload {
  constructor(file, path, onChange) {
    this.file = file;
    this.path = path;
    this.key = storeKey(path, file);
    this.state = 'queued';
    this.offset = 0;
    this.sent = 0; // bytes sent in this page's life (for the rate)
    this.resumedFrom = null;
    this.url = null;
    this.hash = null;
    this.newBytes = null;
    this.error = null;
    this.onChange = onChange;
    this.holder = { xhr: null };
    const saved = localStorage.getItem(this.key);
    if (saved) {
      try { this.url = JSON.parse(saved).url; } catch { /* ignore */ }
    }
  }

  headers(extra = {}) {
    return { 'Tus-Resumable': TUS, 'X-CSRF-Token': csrf(), ...extra };
  }

  remember() {
    localStorage.setItem(this.key, JSON.stringify({ url: this.url, path: this.path, size: this.file.size, name: this.file.name, at: Date.now() }));
  }

  forget() {
    localStorage.removeItem(this.key);
  }

  async run() {
    this.state = 'running';
    this.error = null;
    this.onChange(this);
    try {
      if (this.url) await this.probe();
      if (!this.url) await this.create();
      while (this.state === 'running' && this.offset < this.file.size) await this.patch();
      if (this.state === 'running') this.finish();
    } catch (e) {
      if (e.paused) {
        this.state = 'paused';
      } else {
        this.state = 'failed';
        this.error = e.message;
      }
      this.onChange(this);
    }
  }

  /** HEAD the remembered upload: continue from the node's offset, or start over if it is gone. */
  async probe() {
    const x = await send('HEAD', this.url, this.headers(), null, null, this.holder);
    if (x.status === 404 || x.status === 410 || x.status === 403) {
      this.url = null;
      this.forget();
      return;
    }
    if (x.status >= 400) throw new Error(`cannot resume: HTTP ${x.status}`);
    this.offset = Number(x.getResponseHeader('Upload-Offset') || 0);
    if (this.resumedFrom === null) this.resumedFrom = this.offset;
    this.hash = x.getResponseHeader('Mosaic-Hash') || this.hash;
    this.onChange(this);
  }

  /** POST a new upload; small files go in the same request (creation-with-upload). */
  async create() {
    const meta = `name ${b64(this.path)},filename ${b64(this.file.name)}`;
    const small = this.file.size <= PART;
    const h = this.headers({ 'Upload-Length': String(this.file.size), 'Upload-Metadata': meta });
    let body = null;
    if (small && this.file.size > 0) {
      h['Content-Type'] = 'application/offset+octet-stream';
      body = this.file;
    }
    const x = await send('POST', ENDPOINT, h, body, body ? (n) => this.progress(0, n) : null, this.holder);
    if (x.status !== 201) throw new Error(problem(x));
    this.url = new URL(x.getResponseHeader('Location'), location.href).pathname;
    this.offset = Number(x.getResponseHeader('Upload-Offset') || 0);
    this.took(x);
    if (this.offset < this.file.size) this.remember();
    this.resumedFrom = 0;
  }

  async patch() {
    const end = Math.min(this.file.size, this.offset + PART);
    const start = this.offset;
    const h = this.headers({ 'Upload-Offset': String(start), 'Content-Type': 'application/offset+octet-stream' });
    const x = await send('PATCH', this.url, h, this.file.slice(start, end), (n) => this.progress(start, n), this.holder);
    if (x.status === 409) { await this.probe(); return; } // the node has another offset: follow it
    if (x.status === 404 || x.status === 410) { this.forget(); this.url = null; throw new Error('the node forgot this upload (expired); start it again'); }
    if (x.status !== 204 && x.status !== 200) throw new Error(problem(x));
    this.sent += end - start;
    this.offset = Number(x.getResponseHeader('Upload-Offset') || end);
    this.took(x);
    this.onChange(this);
  }

  took(x) {
    this.hash = x.getResponseHeader('Mosaic-Hash') || this.hash;
    const nb = x.getResponseHeader('Mosaic-New-Bytes') ?? x.getResponseHeader('Mosaic-Stored-Bytes');
    if (nb !== null && nb !== undefined) this.newBytes = Number(nb);
  }

  progress(base, loaded) {
    this.live = base + loaded;
    this.onChange(this, true);
  }

  finish() {
    this.state = 'done';
    this.forget();
    this.onChange(this);
  }

  pause() {
    if (this.state !== 'running' && this.state !== 'queued') return;
    if (this.holder.xhr) this.holder.xhr.abort();
    this.state = 'paused';
    this.onChange(this);
  }

  async cancel() {
    this.pause();
    this.state = 'cancelled';
    if (this.url) {
      try { await api(this.url, { method: 'DELETE', headers: { 'Tus-Resumable': TUS } }); } catch { /* gone already */ }
    }
    this.forget();
    this.onChange(this);
  }

  get shown() {
    return this.state === 'running' && this.live !== undefined ? Math.max(this.offset, this.live) : this.offset;
  }
}

/** The upload queue and its panel. */
export class Uploader {
  constructor({ onFileDone }) {
    this.onFileDone = onFileDone;
    this.items = [];
    this.views = new Map();
    this.panel = document.getElementById('uploads');
    this.list = document.getElementById('upload-items');
    this.title = document.getElementById('uploads-title');
    this.rate = { t: performance.now(), bytes: 0, value: 0 };
    document.getElementById('uploads-hide').addEventListener('click', () => { this.panel.hidden = true; });
    document.getElementById('uploads-clear').addEventListener('click', () => this.clearFinished());
    window.addEventListener('beforeunload', (ev) => {
      if (this.items.some((u) => u.state === 'running')) { ev.preventDefault(); ev.returnValue = ''; }
    });
    this.showInterrupted();
  }

  /** Uploads a previous page left unfinished: choosing the same files again resumes them. */
  showInterrupted() {
    const left = remembered();
    if (!left.length) return;
    this.panel.hidden = false;
    const box = el('div', { class: 'up', id: 'interrupted' },
      el('div', { class: 'line' }, el('span', { class: 'fname' }, `${left.length} interrupted upload${left.length === 1 ? '' : 's'}`)),
      el('div', { class: 'detail' }, 'Choose or drop the same files again to resume them where they stopped: ',
        left.slice(0, 5).map((u) => u.path).join(', '), left.length > 5 ? '…' : ''),
      el('div', { class: 'line' }, el('button', { type: 'button', class: 'btn small', onclick: () => this.discard(left, box) }, 'Discard them')));
    this.list.prepend(box);
  }

  async discard(left, box) {
    for (const u of left) {
      localStorage.removeItem(u.key);
      try { await api(u.url, { method: 'DELETE', headers: { 'Tus-Resumable': TUS } }); } catch { /* expired */ }
    }
    box.remove();
  }

  add(files) {
    if (!files.length) return;
    this.panel.hidden = false;
    for (const { file, path } of files) {
      // a file gets its row when it starts (a long list would relayout on every tick)
      this.items.push(new TusUpload(file, path, (x, quick) => this.changed(x, quick)));
    }
    const inter = document.getElementById('interrupted');
    const mine = new Set(this.items.map((u) => u.key));
    if (inter && remembered().every((r) => mine.has(r.key))) inter.remove(); // all resumed
    this.pump();
  }

  pump() {
    const running = this.items.filter((u) => u.state === 'running').length;
    let room = PARALLEL - running;
    for (const u of this.items) {
      if (room <= 0) break;
      if (u.state === 'queued') { room -= 1; u.run().then(() => this.pump()); }
    }
    this.summarise();
  }

  view(u) {
    const v = {
      root: el('div', { class: 'up', 'data-path': u.path, 'data-state': u.state }),
      name: el('span', { class: 'fname', title: u.path }, u.path),
      toggle: el('button', { type: 'button', class: 'btn ghost icon', 'aria-label': `Pause ${u.path}` }, icon('pause')),
      cancel: el('button', { type: 'button', class: 'btn ghost icon', 'aria-label': `Cancel ${u.path}` }, icon('x')),
      bar: el('i'),
      detail: el('div', { class: 'detail' }, 'Waiting…'),
    };
    v.toggle.addEventListener('click', () => {
      if (u.state === 'running' || u.state === 'queued') u.pause();
      else if (u.state === 'paused' || u.state === 'failed') { u.state = 'queued'; this.pump(); }
    });
    v.cancel.addEventListener('click', () => u.cancel());
    v.root.append(el('div', { class: 'line' }, v.name, v.toggle, v.cancel),
      el('div', { class: 'bar', role: 'progressbar', 'aria-label': `Progress of ${u.path}`, 'aria-valuemin': 0, 'aria-valuemax': 100, 'aria-valuenow': 0 }, v.bar),
      v.detail);
    this.views.set(u, v);
    return v.root;
  }

  /** Note a change; the panel is redrawn at most once a frame, however many files change
   * (a thousand small files finish within a few seconds). */
  changed(u, quick = false) {
    this.dirty = this.dirty || new Map();
    this.dirty.set(u, quick && (this.dirty.get(u) ?? true));
    if (!this.frame) this.frame = requestAnimationFrame(() => this.flush());
  }

  flush() {
    this.frame = 0;
    const dirty = this.dirty;
    this.dirty = new Map();
    let full = false;
    for (const [u, quick] of dirty) {
      this.render(u, quick);
      full = full || !quick;
    }
    if (full) this.summarise();
  }

  render(u, quick) {
    let v = this.views.get(u);
    if (!v) {
      if (u.folded) return;
      this.list.append(this.view(u));
      v = this.views.get(u);
    }
    const size = u.file.size;
    const done = u.shown;
    const pct = size ? Math.floor((done / size) * 100) : (u.state === 'done' ? 100 : 0);
    v.bar.style.width = `${pct}%`;
    v.bar.parentElement.setAttribute('aria-valuenow', String(pct));
    v.root.dataset.state = u.state;
    v.root.className = `up ${u.state}`;
    if (!quick) {
      const paused = u.state === 'paused' || u.state === 'failed';
      v.toggle.replaceChildren(icon(paused ? 'play' : 'pause'));
      v.toggle.setAttribute('aria-label', `${paused ? 'Resume' : 'Pause'} ${u.path}`);
      v.toggle.hidden = u.state === 'done' || u.state === 'cancelled';
      v.cancel.hidden = u.state === 'done' || u.state === 'cancelled';
    }
    const resumed = u.resumedFrom ? ` · resumed at ${fmtBytes(u.resumedFrom)}` : '';
    let text = '';
    if (u.state === 'queued') text = 'Waiting…';
    else if (u.state === 'running') text = `${fmtBytes(done)} of ${fmtBytes(size)} (${pct}%)${resumed}`;
    else if (u.state === 'paused') text = `Paused at ${fmtBytes(u.offset)} of ${fmtBytes(size)}${resumed}`;
    else if (u.state === 'failed') text = `Failed: ${u.error}`;
    else if (u.state === 'cancelled') text = 'Cancelled';
    else if (u.state === 'done') text = doneText(u) + resumed;
    v.detail.textContent = text;
    v.root.dataset.offset = String(u.offset);
    if (u.hash) v.root.dataset.hash = u.hash;
    if (u.resumedFrom !== null) v.root.dataset.resumedFrom = String(u.resumedFrom);
    if (u.state === 'done' && !quick && !u.reported) {
      u.reported = true;
      this.onFileDone(u);
      this.fold(u);
    }
    if (u.state === 'failed' && !quick && !u.reportedError) {
      u.reportedError = true;
      toast(`Upload of ${u.path} failed: ${u.error}`, { bad: true });
    }
  }

  /** Keep the panel short (a long list relayouts on every progress tick). */
  fold(u) {
    this.finished = this.finished || [];
    this.finished.push(u);
    while (this.finished.length > SHOWN_DONE) {
      const old = this.finished.shift();
      old.folded = true;
      const v = this.views.get(old);
      if (v) { v.root.remove(); this.views.delete(old); }
    }
  }

  summarise() {
    const total = this.items.filter((u) => u.state !== 'cancelled');
    const done = total.filter((u) => u.state === 'done').length;
    const now = performance.now();
    const sent = this.items.reduce((s, u) => s + u.sent, 0);
    if (now - this.rate.t > 1000) {
      this.rate.value = ((sent - this.rate.bytes) * 1000) / (now - this.rate.t);
      this.rate = { t: now, bytes: sent, value: this.rate.value };
    }
    const active = total.some((u) => u.state === 'running');
    const waiting = total.filter((u) => u.state === 'queued').length;
    this.title.textContent = total.length
      ? `Uploads: ${done} of ${total.length} done${waiting ? ` · ${waiting} waiting` : ''}${active && this.rate.value > 0 ? ` · ${fmtRate(this.rate.value)}` : ''}`
      : 'Uploads';
    this.panel.dataset.done = String(done);
    this.panel.dataset.total = String(total.length);
  }

  clearFinished() {
    this.finished = [];
    this.items = this.items.filter((u) => {
      if (u.state === 'done' || u.state === 'cancelled') {
        this.views.get(u)?.root.remove();
        this.views.delete(u);
        return false;
      }
      return true;
    });
    this.summarise();
  }
}

function doneText(u) {
  const hash = u.hash ? ` · ${u.hash.slice(0, 12)}…` : '';
  if (u.newBytes === null) return `Stored ${fmtBytes(u.file.size)}${hash}`;
  if (u.newBytes === 0) return `Stored 0 new bytes: dedup saved all ${fmtBytes(u.file.size)}${hash}`;
  const saved = Math.max(0, u.file.size - u.newBytes);
  return `Stored ${fmtBytes(u.newBytes)} new${saved ? ` · dedup and compression saved ${fmtBytes(saved)}` : ''}${hash}`;
}

/** Files from a drop, folders walked recursively: [{file, rel}] (rel: the path inside the drop). */
export async function filesFromDrop(dt) {
  const entries = [...dt.items].map((it) => (it.webkitGetAsEntry ? it.webkitGetAsEntry() : null));
  if (!entries.some(Boolean)) return [...dt.files].map((f) => ({ file: f, rel: f.name }));
  const out = [];
  const walk = async (entry, prefix) => {
    if (!entry) return;
    if (entry.isFile) {
      const file = await new Promise((res, rej) => entry.file(res, rej));
      out.push({ file, rel: prefix + entry.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
        if (!batch.length) break;
        for (const e of batch) await walk(e, `${prefix}${entry.name}/`);
      }
    }
  };
  for (const e of entries) await walk(e, '');
  return out;
}
