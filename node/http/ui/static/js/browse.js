// The folder view: a virtualised list paged through the tree cursor API, sorting, search,
// row actions (download, details, rename or move, delete), new folder, uploads by drop or picker.
import {
  askName, baseName, confirmDelete, el, encPath, fmtBytes, fmtDate, fmtPercent, icon, joinPath, toast,
} from './api.js';
import * as ops from './ops.js';
import { Uploader, filesFromDrop } from './upload.js';

const ROW_H = 44;
const FIRST_PAGE = 200;
const NEXT_PAGE = 1000;
const OVERSCAN = 10;
const PREFETCH_ROWS = 100; // load the next page when this close to the end of what is loaded

const toolbar = document.getElementById('toolbar');
const folder = toolbar.dataset.folder;
const canWrite = toolbar.dataset.canWrite === 'yes';
const viewport = document.getElementById('viewport');
const sizer = document.getElementById('sizer');
const statusLine = document.getElementById('status-line');
const summary = document.getElementById('summary');
const searchBox = document.getElementById('search');
const listing = document.getElementById('listing');
const dropHint = document.getElementById('drop-hint');

const IMAGE = /\.(png|jpe?g|gif|webp|svg|bmp|ico|avif)$/i;

const state = {
  entries: [], // in the server's order (by name)
  view: [], // what is shown: entries or search results, sorted
  cursor: null,
  done: false,
  loading: null, // the page request in flight
  sort: { key: 'name', dir: 1 },
  query: '',
  active: -1,
  generation: 0, // bumps on every reset, so stale pages are dropped
  rows: new Map(), // index -> row element currently rendered
};

// ---- loading -------------------------------------------------------------------------
async function loadMore() {
  if (state.loading || state.done || state.query) return state.loading;
  const gen = state.generation;
  const limit = state.entries.length ? NEXT_PAGE : FIRST_PAGE;
  state.loading = (async () => {
    try {
      const page = await ops.listFolder(folder, state.cursor, limit);
      if (gen !== state.generation) return;
      state.entries.push(...page.entries);
      state.cursor = page.cursor;
      state.done = !page.cursor;
      state.loading = null;
      refreshView();
    } catch (e) {
      if (gen !== state.generation) return;
      statusLine.hidden = false;
      statusLine.textContent = e.status === 404
        ? 'Nothing here yet: this folder exists once something is put in it (or New folder makes it).'
        : `Cannot list this folder: ${e.message}`;
      state.done = true;
    } finally {
      if (gen === state.generation) state.loading = null;
    }
  })();
  return state.loading;
}

async function loadAll() {
  while (!state.done && !state.query) {
    await loadMore();
  }
}

function reset() {
  state.generation += 1;
  state.entries = [];
  state.cursor = null;
  state.done = false;
  state.loading = null;
  state.active = Math.min(state.active, 0);
  clearRows();
  if (state.query) runSearch(state.query);
  else loadMore();
}

// ---- sorting and the shown list -------------------------------------------------------
const KEYS = {
  name: (e) => e.name,
  size: (e) => (e.folder ? -1 : e.size ?? -1),
  created: (e) => Number(e.created ?? 0),
  saved: (e) => e.saved ?? -1,
  cached: (e) => e.cached ?? -1,
};
const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: 'base' });

function sorted(list) {
  const { key, dir } = state.sort;
  if (key === 'name' && dir === 1 && !state.query) return list; // the server's order already
  const k = KEYS[key];
  return [...list].sort((a, b) => {
    if (a.folder !== b.folder) return a.folder ? -1 : 1;
    const x = k(a);
    const y = k(b);
    const c = typeof x === 'string' ? collator.compare(x, y) : x - y;
    return c * dir || collator.compare(a.name, b.name);
  });
}

/** The dedup column shows only when the server reports savings per entry. */
function savedColumn() {
  const shown = state.entries.some((e) => e.saved !== null) || state.view.some((e) => e.saved !== null);
  listing.classList.toggle('no-saved', !shown);
}

function refreshView(list) {
  if (!state.query) state.view = sorted(state.entries);
  else if (list) state.view = sorted(list);
  else state.view = sorted(state.view);
  savedColumn();
  clearRows();
  render();
  describe();
}

function describe() {
  const n = state.view.length;
  const partial = !state.query && !state.done;
  const nonDefault = !(state.sort.key === 'name' && state.sort.dir === 1);
  if (state.query) {
    summary.textContent = `${n.toLocaleString()} match${n === 1 ? '' : 'es'} for “${state.query}”${state.searchTruncated ? ' (first results)' : ''}`;
  } else {
    summary.textContent = partial
      ? `${n.toLocaleString()}+ items${nonDefault ? ' (sorted among those loaded)' : ''}`
      : `${n.toLocaleString()} item${n === 1 ? '' : 's'}`;
  }
  statusLine.hidden = !(partial || n === 0);
  if (n === 0 && state.done) {
    statusLine.hidden = false;
    statusLine.textContent = state.query ? 'No names match.' : 'This folder is empty. Drop files here to upload them.';
  } else if (partial) {
    statusLine.textContent = 'Scroll to load more…';
  } else if (n === 0) {
    statusLine.textContent = 'Loading…';
  }
  listing.setAttribute('aria-rowcount', partial ? '-1' : String(n + 1));
}

// ---- the virtualised list --------------------------------------------------------------
function clearRows() {
  for (const r of state.rows.values()) r.remove();
  state.rows.clear();
}

function render() {
  const n = state.view.length;
  sizer.style.height = `${n * ROW_H}px`;
  const top = viewport.scrollTop;
  const height = viewport.clientHeight || 600;
  const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
  const last = Math.min(n, Math.ceil((top + height) / ROW_H) + OVERSCAN);
  for (const [i, r] of state.rows) {
    if (i < first || i >= last) {
      if (r.contains(document.activeElement)) continue; // keep the focused row
      r.remove();
      state.rows.delete(i);
    }
  }
  for (let i = first; i < last; i += 1) {
    if (!state.rows.has(i)) {
      const r = rowFor(state.view[i], i);
      state.rows.set(i, r);
      sizer.append(r);
    }
  }
  if (!state.query && !state.done && last + PREFETCH_ROWS > n) loadMore();
}

function copiesCell(e) {
  const box = el('div', { class: 'copies c-copies' });
  if (e.folder) return box;
  for (const b of e.backends) box.append(el('span', { class: 'badge', title: `backend ${b}` }, b));
  for (const nd of e.nodes) {
    const id = typeof nd === 'string' ? nd : (nd.id || nd.name || '');
    box.append(el('span', { class: 'badge accent', title: `node ${id}` }, `node ${id.slice(0, 8)}`));
  }
  if (!e.backends.length && !e.nodes.length) box.append(el('span', { class: 'muted' }, 'this node only'));
  return box;
}

function rowFor(e, i) {
  const href = e.folder ? `/files/${encPath(e.path)}` : `/details/${encPath(e.path)}`;
  const kind = e.folder ? 'folder' : (IMAGE.test(e.name) ? 'image' : 'file');
  const label = state.query ? e.path : e.name;
  const cached = e.cached;
  const actions = el('div', { class: 'actions c-actions', role: 'cell' });
  if (e.folder) {
    actions.append(el('a', { class: 'btn ghost icon', href: ops.archiveUrl(e.path), download: `${e.name}.tar`, 'aria-label': `Download ${e.name} as an archive`, title: 'Download as .tar', tabindex: -1 }, icon('archive')));
  } else {
    actions.append(el('a', { class: 'btn ghost icon', href: ops.fileUrl(e.path), download: e.name, 'aria-label': `Download ${e.name}`, title: 'Download', tabindex: -1 }, icon('download')));
    actions.append(el('a', { class: 'btn ghost icon', href, 'aria-label': `Details of ${e.name}`, title: 'Details', tabindex: -1 }, icon('info')));
  }
  if (canWrite) {
    actions.append(el('button', { type: 'button', class: 'btn ghost icon', 'data-act': 'rename', 'aria-label': `Rename or move ${e.name}`, title: 'Rename or move (F2)', tabindex: -1 }, icon('pencil')));
    actions.append(el('button', { type: 'button', class: 'btn ghost icon', 'data-act': 'delete', 'aria-label': `Delete ${e.name}`, title: 'Delete (Del)', tabindex: -1 }, icon('trash')));
  }
  const meter = el('span', { class: 'meter' }, el('i'));
  if (cached !== null && cached !== undefined) meter.firstChild.style.width = `${Math.round(cached * 100)}%`;
  const r = el('div', {
    class: `row cols${e.folder ? ' folder' : ''}`, role: 'row', tabindex: i === state.active ? 0 : -1,
    'aria-rowindex': i + 2, 'data-i': i, 'data-path': e.path, 'aria-selected': i === state.active ? 'true' : 'false',
  },
  el('div', { class: 'name c-name', role: 'cell' }, icon(kind), el('a', { href, tabindex: -1, title: e.path }, label)),
  el('div', { class: 'num c-size', role: 'cell' }, e.folder ? '—' : fmtBytes(e.size)),
  el('div', { class: 'c-created muted', role: 'cell' }, e.folder ? '' : fmtDate(e.created)),
  el('div', { class: 'num c-saved', role: 'cell' }, e.folder || e.saved === null ? '' : fmtBytes(e.saved)),
  el('div', { class: 'num c-cached', role: 'cell' }, e.folder || cached === null ? '' : [meter, fmtPercent(cached)]),
  el('div', { role: 'cell', class: 'c-copies' }, copiesCell(e)),
  actions);
  r.style.transform = `translateY(${i * ROW_H}px)`;
  return r;
}

viewport.addEventListener('scroll', () => requestAnimationFrame(render), { passive: true });
window.addEventListener('resize', () => requestAnimationFrame(render));

// ---- keyboard and pointer --------------------------------------------------------------
function focusRow(i) {
  const n = state.view.length;
  if (!n) return;
  const j = Math.max(0, Math.min(n - 1, i));
  const prev = state.rows.get(state.active);
  if (prev) { prev.tabIndex = -1; prev.setAttribute('aria-selected', 'false'); }
  state.active = j;
  const top = j * ROW_H;
  if (top < viewport.scrollTop) viewport.scrollTop = top;
  else if (top + ROW_H > viewport.scrollTop + viewport.clientHeight) viewport.scrollTop = top + ROW_H - viewport.clientHeight;
  render();
  const r = state.rows.get(j);
  if (r) {
    r.tabIndex = 0;
    r.setAttribute('aria-selected', 'true');
    r.focus({ preventScroll: true });
  }
}

viewport.addEventListener('keydown', (ev) => {
  if (ev.target.closest('.actions') && (ev.key === 'Enter' || ev.key === ' ')) return;
  const page = Math.max(1, Math.floor(viewport.clientHeight / ROW_H) - 1);
  const e = state.view[state.active];
  switch (ev.key) {
    case 'ArrowDown': focusRow(state.active + 1); break;
    case 'ArrowUp': focusRow(state.active - 1); break;
    case 'PageDown': focusRow(state.active + page); break;
    case 'PageUp': focusRow(state.active - page); break;
    case 'Home': focusRow(0); break;
    case 'End': focusRow(state.view.length - 1); break;
    case 'Enter': if (e) location.assign(e.folder ? `/files/${encPath(e.path)}` : `/details/${encPath(e.path)}`); break;
    case 'F2': if (e && canWrite) rename(e); break;
    case 'Delete': if (e && canWrite) remove(e); break;
    case 'Backspace': if (folder) location.assign(`/files/${encPath(folder.split('/').slice(0, -1).join('/'))}`); break;
    default: return;
  }
  ev.preventDefault();
});

viewport.addEventListener('focus', (ev) => {
  if (ev.target === viewport && state.view.length) focusRow(state.active < 0 ? 0 : state.active);
});

viewport.addEventListener('click', (ev) => {
  const row = ev.target.closest('.row');
  if (!row) return;
  const i = Number(row.dataset.i);
  const e = state.view[i];
  const act = ev.target.closest('[data-act]');
  if (act) {
    ev.preventDefault();
    if (act.dataset.act === 'rename') rename(e);
    if (act.dataset.act === 'delete') remove(e);
    return;
  }
  if (!ev.target.closest('a')) focusRow(i);
});

for (const b of document.querySelectorAll('.list-head button[data-sort]')) {
  b.addEventListener('click', () => {
    const key = b.dataset.sort;
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === 'name' ? 1 : -1) };
    for (const o of document.querySelectorAll('.list-head button[data-sort]')) {
      const head = o.parentElement; // the columnheader carries aria-sort
      if (o === b) head.setAttribute('aria-sort', state.sort.dir === 1 ? 'ascending' : 'descending');
      else head.removeAttribute('aria-sort');
    }
    refreshView();
  });
}

document.addEventListener('keydown', (ev) => {
  if (ev.key === '/' && document.activeElement.tagName !== 'INPUT' && !document.querySelector('dialog[open]')) {
    ev.preventDefault();
    searchBox.focus();
  }
});

// ---- search ----------------------------------------------------------------------------
let searchTimer = null;
let searchAbort = null;

async function runSearch(q) {
  if (searchAbort) searchAbort.abort();
  searchAbort = new AbortController();
  statusLine.hidden = false;
  statusLine.textContent = 'Searching…';
  try {
    const res = await ops.search(q, folder, searchAbort.signal);
    if (state.query !== q) return;
    state.searchTruncated = res.truncated;
    viewport.scrollTop = 0;
    state.active = -1;
    refreshView(res.entries);
  } catch (e) {
    if (e.name === 'AbortError') return;
    statusLine.textContent = `Search failed: ${e.message}`;
  }
}

searchBox.addEventListener('input', () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(() => {
    const q = searchBox.value.trim();
    if (q === state.query) return;
    state.query = q;
    viewport.scrollTop = 0;
    if (q) runSearch(q);
    else { state.view = []; refreshView(); if (!state.entries.length) loadMore(); }
  }, 200);
});
searchBox.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape') { searchBox.value = ''; searchBox.dispatchEvent(new Event('input')); }
  if (ev.key === 'ArrowDown' || ev.key === 'Enter') { ev.preventDefault(); viewport.focus(); }
});

// ---- actions ---------------------------------------------------------------------------
const nameDialog = document.getElementById('dlg-name');
const deleteDialog = document.getElementById('dlg-delete');

async function rename(e) {
  const to = await askName(nameDialog, {
    title: `Rename or move ${e.folder ? 'folder' : 'file'}`,
    label: 'New path (folders separated by /)',
    value: e.path,
    ok: 'Rename',
    check: async (v) => {
      const target = v.replace(/^\/+|\/+$/g, '');
      if (target === e.path) return;
      if (e.folder) await ops.moveFolder(e.path, target);
      else await ops.move(e.path, target);
    },
  });
  if (to !== null) { toast(`Moved to ${to}`); reset(); }
}

async function remove(e) {
  const what = e.folder ? `the folder “${e.path}” and every file in it` : `“${e.path}”`;
  const done = await confirmDelete(deleteDialog, `Delete ${what}? Its name goes now; the space comes back with gc once no other name uses the content.`,
    () => (e.folder ? ops.removeFolder(e.path) : ops.removeName(e.path)));
  if (done) { toast(`Deleted ${e.name}`); reset(); }
}

if (canWrite) {
  document.getElementById('new-folder').addEventListener('click', async () => {
    const name = await askName(nameDialog, {
      title: 'New folder', label: 'Folder name', value: '', ok: 'Create',
      check: (v) => ops.mkdir(joinPath(folder, v.replace(/^\/+|\/+$/g, ''))),
    });
    if (name !== null) { toast(`Folder ${name} created`); reset(); }
  });
}

// ---- uploads ---------------------------------------------------------------------------
let refreshTimer = null;
function soonRefresh() {
  clearTimeout(refreshTimer);
  refreshTimer = setTimeout(() => { if (!state.query) reset(); }, 400);
}

const uploader = canWrite ? new Uploader({ onFileDone: soonRefresh }) : null;

if (uploader) {
  const fileInput = document.getElementById('file-input');
  const folderInput = document.getElementById('folder-input');
  document.getElementById('pick-files').addEventListener('click', () => fileInput.click());
  document.getElementById('pick-folder').addEventListener('click', () => folderInput.click());
  for (const input of [fileInput, folderInput]) {
    input.addEventListener('change', () => {
      const files = [...input.files].map((f) => ({ file: f, path: joinPath(folder, f.webkitRelativePath || f.name) }));
      uploader.add(files);
      input.value = '';
    });
  }
  let depth = 0;
  listing.addEventListener('dragenter', (ev) => {
    if (![...ev.dataTransfer.types].includes('Files')) return;
    depth += 1;
    dropHint.hidden = false;
  });
  listing.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth) dropHint.hidden = true;
  });
  listing.addEventListener('dragover', (ev) => {
    if ([...ev.dataTransfer.types].includes('Files')) { ev.preventDefault(); ev.dataTransfer.dropEffect = 'copy'; }
  });
  listing.addEventListener('drop', async (ev) => {
    ev.preventDefault();
    depth = 0;
    dropHint.hidden = true;
    const found = await filesFromDrop(ev.dataTransfer);
    uploader.add(found.map(({ file, rel }) => ({ file, path: joinPath(folder, rel) })));
  });
}

// ---- start -----------------------------------------------------------------------------
document.title = `${folder ? baseName(folder) : 'Files'} · Mosaic`;
loadMore();
