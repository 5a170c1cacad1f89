// Every page: sign-out.
import { api, toast } from './api.js';

const out = document.getElementById('signout');
if (out) {
  out.addEventListener('click', async () => {
    try {
      await api('/v1/session', { method: 'DELETE' });
    } catch (e) {
      if (e.status !== 401) { toast(`Sign-out failed: ${e.message}`, { bad: true }); return; }
    }
    location.assign('/signin');
  });
}
