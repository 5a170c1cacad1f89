// Shared helpers of the Mosaic web UI: the JSON API client, formatting, small DOM builders.

/** The session's CSRF token, rendered by the server into <meta name="csrf-token">. */
export function csrf() {
  const m = document.querySelector('meta[name="csrf-token"]');
  return m ? m.content : '';
}

/** An API error: the HTTP status and the RFC 9457 problem document's title and detail. */
export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || `HTTP ${status}`);
    this.status = status;
    this.title = title;
  }
}

const SAFE = new Set(['GET', 'HEAD', 'OPTIONS']);

/** Go to the sign-in page, coming back here afterwards. */
export function toSignIn() {
  const next = location.pathname + location.search;
  location.assign('/signin?next=' + encodeURIComponent(next));
}

/** fetch() with the session cookie and the CSRF header; JSON in and out; ApiError on failure. */
export async function api(path, { method = 'GET', json, body, headers = {}, signal, raw = false } = {}) {
  const h = { Accept: 'application/json', ...headers };
  if (!SAFE.has(method)) h['X-CSRF-Token'] = csrf();
  if (json !== undefined) {
    h['Content-Type'] = 'application/json';
    body = JSON.stringify(json);
  }
  const r = await fetch(path, { method, headers: h, body, signal, credentials: 'same-origin' });
  if (r.status === 401) {
    toSignIn();
    throw new ApiError(401, 'Signed out', 'the session ended; sign in again');
  }
  if (!r.ok) {
    let doc = {};
    try { doc = await r.json(); } catch { /* not a problem document */ }
    throw new ApiError(r.status, doc.title || r.statusText, doc.detail || '');
  }
  if (raw) return r;
  if (r.status === 204 || method === 'HEAD') return null;
  const type = r.headers.get('Content-Type') || '';
  return type.includes('json') ? r.json() : r.text();
}

/** A virtual path as a URL path: each segment percent-encoded, slashes kept. */
export function encPath(path) {
  return path.split('/').filter((s) => s !== '').map(encodeURIComponent).join('/');
}

export function joinPath(folder, name) {
  return folder ? `${folder.replace(/\/+$/, '')}/${name}` : name;
}

export function baseName(path) {
  const i = path.replace(/\/+$/, '').lastIndexOf('/');
  return i < 0 ? path : path.slice(i + 1);
}

export function parentOf(path) {
  const i = path.replace(/\/+$/, '').lastIndexOf('/');
  return i < 0 ? '' : path.slice(0, i);
}

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 -> "1.5 KiB". */
export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n) || n < 0) return '—';
  let i = 0;
  let v = n;
  while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i += 1; }
  return `${i === 0 ? Math.round(v) : v.toFixed(v < 10 ? 1 : 0)} ${UNITS[i]}`;
}

export function fmtRate(bytesPerSecond) {
  return `${fmtBytes(bytesPerSecond)}/s`;
}

/** A timestamp in ns, ms, s or ISO text -> a Date (or null). */
export function toDate(t) {
  if (t === null || t === undefined || t === '') return null;
  if (typeof t === 'string') {
    const d = new Date(t);
    return Number.isNaN(d.getTime()) ? null : d;
  }
  if (t > 1e17) return new Date(t / 1e6); // ns
  if (t > 1e14) return new Date(t / 1e3); // us
  if (t > 1e11) return new Date(t); // ms
  return new Date(t * 1000); // s
}

const DATE_FMT = new Intl.DateTimeFormat(undefined, { dateStyle: 'medium', timeStyle: 'short' });
const TIME_FMT = new Intl.DateTimeFormat(undefined, { timeStyle: 'medium' });

export function fmtDate(t) {
  const d = toDate(t);
  return d ? DATE_FMT.format(d) : '—';
}

export function fmtTime(t) {
  const d = toDate(t);
  return d ? TIME_FMT.format(d) : '—';
}

/** "3 min ago" for a past timestamp. */
export function fmtAgo(t) {
  const d = toDate(t);
  if (!d) return 'never';
  const s = Math.max(0, (Date.now() - d.getTime()) / 1000);
  if (s < 5) return 'just now';
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

export function fmtPercent(f) {
  if (f === null || f === undefined || Number.isNaN(f)) return '—';
  return `${Math.round(f * 100)}%`;
}

/** Build an element: el('a', {href: '/x', class: 'btn'}, 'text', child...). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

const SVG = 'http://www.w3.org/2000/svg';

/** An icon from the page's sprite (templates/_icons.html). */
export function icon(name, label) {
  const svg = document.createElementNS(SVG, 'svg');
  svg.setAttribute('class', 'ic');
  svg.setAttribute('focusable', 'false');
  if (label) {
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
  } else {
    svg.setAttribute('aria-hidden', 'true');
  }
  const use = document.createElementNS(SVG, 'use');
  use.setAttribute('href', `#i-${name}`);
  svg.append(use);
  return svg;
}

export function svgEl(tag, attrs = {}) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
}

/** A short message at the bottom of the screen. */
export function toast(message, { bad = false, ms = 4000 } = {}) {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = el('div', { class: bad ? 'toast bad' : 'toast', role: bad ? 'alert' : 'status' }, message);
  box.append(t);
  setTimeout(() => t.remove(), ms);
}

/** Copy text to the clipboard (a hidden textarea where the async API is unavailable). */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = el('textarea', { class: 'sr-only' });
    ta.value = text;
    document.body.append(ta);
    ta.select();
    const ok = document.execCommand('copy');
    ta.remove();
    return ok;
  }
}

// Cancel buttons of every dialog (type=button, so Enter in a field submits with OK).
document.addEventListener('click', (ev) => {
  const b = ev.target.closest('[data-close]');
  if (b) b.closest('dialog')?.close('cancel');
});

/**
 * Show a form <dialog> modally. On OK, `accept()` runs (the OK button disabled meanwhile) and
 * the dialog closes, resolving to what it returns; if it throws, its message shows in the
 * dialog's .err and the dialog stays open. Closed any other way, it resolves to `cancelled`.
 */
function runDialog(dialog, accept, cancelled) {
  const form = dialog.querySelector('form');
  const err = dialog.querySelector('.err');
  const okBtn = dialog.querySelector('button[value="ok"]');
  err.textContent = '';
  return new Promise((resolve) => {
    const onSubmit = async (ev) => {
      ev.preventDefault();
      let value;
      okBtn.disabled = true;
      try {
        value = await accept();
      } catch (e) {
        err.textContent = e.message;
        return;
      } finally {
        okBtn.disabled = false;
      }
      dialog.close('ok');
      cleanup();
      resolve(value);
    };
    const onClose = () => { if (dialog.returnValue !== 'ok') { cleanup(); resolve(cancelled); } };
    const cleanup = () => {
      form.removeEventListener('submit', onSubmit);
      dialog.removeEventListener('close', onClose);
    };
    form.addEventListener('submit', onSubmit);
    dialog.addEventListener('close', onClose);
    dialog.returnValue = '';
    dialog.showModal();
  });
}

/** A <dialog> that asks for one line of text; resolves to the text or null (cancel). */
export function askName(dialog, { title, label, value = '', ok = 'OK', check }) {
  const input = dialog.querySelector('input');
  if (title) dialog.querySelector('h2').textContent = title;
  if (label) dialog.querySelector('label').textContent = label;
  dialog.querySelector('button[value="ok"]').textContent = ok;
  input.value = value;
  const answer = runDialog(dialog, async () => {
    const v = input.value.trim();
    if (!v) throw new Error('A name is needed.');
    if (check) await check(v);
    return v;
  }, null);
  input.focus();
  const dot = value.lastIndexOf('.');
  const slash = value.lastIndexOf('/');
  input.setSelectionRange(slash + 1, dot > slash + 1 ? dot : value.length);
  return answer;
}

/** A <dialog> that confirms a deletion; `action` runs on OK (its error is shown in the dialog). */
export function confirmDelete(dialog, text, action) {
  dialog.querySelector('p').textContent = text;
  return runDialog(dialog, async () => { await action(); return true; }, false);
}
