// A file's details: hash (copyable), chunks, stored bytes, dedup saving, where it lives,
// a preview for text and images, verify, rename or move, delete.
import {
  askName, confirmDelete, copyText, el, encPath, fmtBytes, fmtDate, fmtPercent, parentOf, toast,
} from './api.js';
import * as ops from './ops.js';

const box = document.getElementById('details');
const ref = box.dataset.ref;
const name = box.dataset.name;
const PREVIEW_BYTES = 64 * 1024;
const IMAGE = /\.(png|jpe?g|gif|webp|bmp|ico|avif)$/i;
const TEXT = /\.(txt|md|rst|csv|tsv|json|ya?ml|toml|ini|cfg|conf|log|py|js|mjs|ts|css|html?|xml|sh|c|h|cc|cpp|hpp|rs|go|java|rb|pl|sql|diff|patch)$|(^|\/)(README|LICENSE|Makefile|Dockerfile)[^/]*$/i;

function set(id, value) {
  document.getElementById(id).textContent = value;
}

function whereRow(label, fraction, kind) {
  const bar = el('div', { class: 'bar' }, el('i'));
  bar.firstChild.style.width = `${Math.round(fraction * 100)}%`;
  return el('div', { class: 'loc', 'data-kind': kind, 'data-name': label },
    el('span', { class: 'badge' + (kind === 'local' ? ' accent' : '') }, label), bar, el('span', { class: 'num' }, fmtPercent(fraction)));
}

async function load() {
  let s;
  try {
    s = await ops.stat(ref);
  } catch (e) {
    set('hash', e.status === 404 ? 'No such file' : `Cannot read: ${e.message}`);
    return;
  }
  set('hash', s.hash);
  set('f-size', `${fmtBytes(s.size)} (${Number(s.size).toLocaleString()} bytes)`);
  set('f-created', fmtDate(s.created_ns ?? s.created));
  set('f-chunks', `${s.chunks} (${s.distinct_chunks ?? s.chunks} distinct)`);
  set('f-stored', `${fmtBytes(s.stored_bytes)}`);
  set('f-saved', `${fmtBytes(s.dedup_saving_bytes)}${s.size ? ` (${fmtPercent(s.dedup_saving_bytes / s.size)} of the file)` : ''}`);
  set('f-ratio', s.compression_ratio ? `${Number(s.compression_ratio).toFixed(2)}×` : '—');
  const names = document.getElementById('f-names');
  names.replaceChildren(...(s.names || []).flatMap((n, i) => [i ? ', ' : '', el('a', { href: `/details/${encPath(n)}` }, n)]));
  if (!(s.names || []).length) names.textContent = 'none (reachable by hash only)';
  const where = document.getElementById('where');
  const locs = s.locations || {};
  const rows = [];
  for (const [k, f] of Object.entries(locs)) rows.push(whereRow(k === 'local' ? 'this node' : k, f, k === 'local' ? 'local' : 'backend'));
  for (const [id, complete] of Object.entries(s.nodes || {})) {
    rows.push(el('div', { class: 'loc', 'data-kind': 'node', 'data-name': id },
      el('span', { class: 'badge accent', title: `node ${id}` }, `node ${id.slice(0, 8)}`),
      el('span', { class: 'muted' }, complete ? 'holds every chunk' : 'holds part of it'),
      el('span', { class: 'num' }, complete ? '✓' : '…')));
  }
  where.replaceChildren(...(rows.length ? rows : [el('span', { class: 'muted' }, 'Nowhere yet.')]));
  where.append(el('p', { class: 'muted' }, `Cached here: ${fmtPercent(s.cached_fraction)} of the stored bytes.`));
  preview(s);
}

async function preview(s) {
  const card = document.getElementById('preview-card');
  const pane = document.getElementById('preview');
  const label = name || ref;
  if (IMAGE.test(label) && s.size <= 32 * 1024 * 1024) {
    const img = el('img', { alt: `Preview of ${label}`, src: ops.fileUrl(name || s.hash) });
    if (!name) img.src = `/v1/files/${s.hash}`;
    pane.replaceChildren(img);
    card.hidden = false;
    return;
  }
  if (!TEXT.test(label) && s.size > PREVIEW_BYTES) return;
  try {
    const url = name ? ops.fileUrl(name) : `/v1/files/${s.hash}`;
    const r = await fetch(url, { headers: { Range: `bytes=0-${PREVIEW_BYTES - 1}` }, credentials: 'same-origin' });
    if (!r.ok) return;
    const buf = new Uint8Array(await r.arrayBuffer());
    if (buf.subarray(0, 4096).includes(0)) return; // binary
    let text;
    try { text = new TextDecoder('utf-8', { fatal: true }).decode(buf); } catch { return; }
    const more = s.size > buf.length ? `\n… (${fmtBytes(s.size - buf.length)} more)` : '';
    pane.replaceChildren(el('pre', { id: 'preview-text' }, text + more));
    card.hidden = false;
  } catch { /* no preview */ }
}

document.getElementById('copy-hash').addEventListener('click', async () => {
  const h = document.getElementById('hash').textContent;
  if (await copyText(h)) toast('Hash copied');
});

document.getElementById('verify').addEventListener('click', async (ev) => {
  const btn = ev.currentTarget;
  const out = document.getElementById('verify-result');
  btn.disabled = true;
  out.replaceChildren(el('span', { class: 'badge' }, 'Verifying…'));
  try {
    const r = await ops.verify(ref);
    out.replaceChildren(r.ok
      ? el('span', { class: 'badge ok', id: 'verify-ok' }, `Verified: ${fmtBytes(r.bytes)} read back, every chunk and the file hash check out`)
      : el('span', { class: 'badge bad', id: 'verify-bad' }, `Problems: ${r.errors.join('; ')}`));
  } catch (e) {
    out.replaceChildren(el('span', { class: 'badge bad' }, `Verify failed: ${e.message}`));
  } finally {
    btn.disabled = false;
  }
});

const renameBtn = document.getElementById('rename');
if (renameBtn) {
  renameBtn.addEventListener('click', async () => {
    const to = await askName(document.getElementById('dlg-name'), {
      value: name, ok: 'Rename', check: (v) => ops.move(name, v.replace(/^\/+|\/+$/g, '')),
    });
    if (to !== null) location.assign(`/details/${encPath(to.replace(/^\/+|\/+$/g, ''))}`);
  });
  document.getElementById('delete').addEventListener('click', async () => {
    const ok = await confirmDelete(document.getElementById('dlg-delete'), `Delete “${name}”?`, () => ops.removeName(name));
    if (ok) location.assign(`/files/${encPath(parentOf(name))}`);
  });
}

load();
