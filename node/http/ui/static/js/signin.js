// The sign-in page: trade a token for a session cookie (POST /v1/session), then go on.
const form = document.getElementById('signin-form');
const input = document.getElementById('token');
const error = document.getElementById('signin-error');
const submit = document.getElementById('signin-submit');

/** Only a path on this origin may be the next page (never //host or a scheme). */
function safeNext(next) {
  return next && next.startsWith('/') && !next.startsWith('//') && !next.startsWith('/\\') ? next : '/';
}

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  error.hidden = true;
  submit.disabled = true;
  try {
    const r = await fetch('/v1/session', {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token: input.value.trim() }),
    });
    if (r.ok) {
      input.value = '';
      location.assign(safeNext(form.dataset.next));
      return;
    }
    let doc = {};
    try { doc = await r.json(); } catch { /* not JSON */ }
    if (r.status === 429) {
      const wait = r.headers.get('Retry-After');
      error.textContent = `Too many attempts. Try again${wait ? ` in ${wait} s` : ' later'}.`;
    } else if (r.status === 401 || r.status === 403) {
      error.textContent = 'That token is not valid on this node.';
    } else {
      error.textContent = doc.detail || doc.title || `Sign-in failed (HTTP ${r.status}).`;
    }
  } catch (e) {
    error.textContent = `Cannot reach the node: ${e.message}`;
  } finally {
    submit.disabled = false;
  }
  error.hidden = false;
  input.select();
});
