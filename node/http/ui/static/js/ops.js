// The virtual directory's verbs, as the HTTP API offers them (one place for every page).
import { api, encPath } from './api.js';

/** One page of a folder: {entries, cursor} (entries normalised by `entry`). */
export async function listFolder(folder, cursor, limit, signal) {
  const q = new URLSearchParams({ limit: String(limit) });
  if (cursor) q.set('cursor', cursor);
  const doc = await api(`/v1/tree/${encPath(folder)}?${q}`, { signal });
  const items = doc.entries || doc.items || doc.children || [];
  return { entries: items.map((e) => entry(e, folder)), cursor: doc.cursor || doc.next || null };
}

/** Names matching a substring or glob: {entries, truncated}. */
export async function search(q, folder, signal) {
  const params = new URLSearchParams({ q });
  const doc = await api(`/v1/search?${params}`, { signal });
  const items = Array.isArray(doc) ? doc : (doc.entries || doc.results || doc.items || []);
  return { entries: items.map((e) => entry(e, '')), truncated: Boolean(doc.truncated || doc.cursor) };
}

/** A listing entry in one shape, whatever optional fields the server sent. */
export function entry(e, folder) {
  const path = e.path || (folder ? `${folder}/${e.name}` : e.name);
  const isFolder = e.type === 'folder' || e.kind === 'folder' || e.folder === true || e.is_folder === true;
  const copies = e.copies || {};
  return {
    name: e.name || path.split('/').pop(),
    path: path.replace(/\/+$/, ''),
    folder: isFolder,
    hash: e.hash || null,
    size: e.size ?? null,
    created: e.created ?? e.created_ns ?? null,
    saved: e.dedup_saving_bytes ?? e.saved ?? null,
    cached: e.cached ?? e.cached_fraction ?? null,
    backends: Array.isArray(copies) ? copies : (copies.backends || []),
    nodes: Array.isArray(copies) ? [] : (copies.nodes || []),
  };
}

export function mkdir(path) {
  return api('/v1/folders', { method: 'POST', json: { path } });
}

export function move(from, to) {
  return api('/v1/move', { method: 'POST', json: { from, to } });
}

export function removeName(path) {
  return api(`/v1/names/${encPath(path)}`, { method: 'DELETE' });
}

/** Delete a folder and everything under it (the server refuses what the token may not touch). */
export function removeFolder(path) {
  return api(`/ui/folder/${encPath(path)}`, { method: 'DELETE' });
}

/** Rename a folder: every name (and empty folder) under it moves, in one transaction. */
export function moveFolder(from, to) {
  return move(from, to);
}

export function stat(ref) {
  return api(`/v1/stat/${encPath(ref)}`);
}

export function verify(ref) {
  return api(`/ui/verify/${encPath(ref)}`, { method: 'POST' });
}

export function fileUrl(path) {
  return `/v1/names/${encPath(path)}`;
}

export function archiveUrl(folder) {
  return `/ui/archive/${encPath(folder)}`;
}
