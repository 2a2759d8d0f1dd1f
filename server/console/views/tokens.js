// API tokens for ferryctl and scripts.

import { call } from '../api.js';
import { field, h, table, when } from '../dom.js';
import { flash } from '../app.js';

export async function tokensView() {
  const list = h('div', {});
  const secret = h('div', { 'aria-live': 'polite' });
  async function load() {
    const r = await call('GET', '/v1/tokens');
    list.replaceChildren(table(['Name', 'Kind', 'Created', { label: 'Last used', optional: true }, ''],
      r.tokens.map((t) => [t.name, t.kind, when(t.created_at), when(t.last_used_at),
        t.kind === 'api' ? h('button', {
          type: 'button', class: 'danger', 'aria-label': `Revoke token ${t.name}`,
          onclick: async () => {
            if (!confirm(`Revoke the token ${t.name}? Programs using it stop working.`)) return;
            try {
              await call('DELETE', `/v1/tokens/${encodeURIComponent(t.id)}`);
              await load();
            } catch (err) {
              flash(err.message);
            }
          },
        }, 'Revoke') : '']), 'No tokens.'));
  }
  const name = h('input', { name: 'name', required: true, maxlength: 100 });
  const form = h('form', {
    class: 'inline',
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await call('POST', '/v1/tokens', { name: name.value });
        secret.replaceChildren(h('section', {}, h('p', {}, 'Your new token (shown only now):'),
          h('p', {}, h('code', { id: 'new-token' }, r.token)),
          h('p', { class: 'muted' }, 'Use it with ferryctl: FERRY_TOKEN=… ferryctl gateway list')));
        name.value = '';
        await load();
      } catch (err) {
        flash(err.message);
      }
    },
  }, field('Token name', name), h('button', { type: 'submit' }, 'Create token'));
  try {
    await load();
  } catch (err) {
    flash(err.message);
  }
  return h('div', {}, h('h1', {}, 'API tokens'), form, secret, list);
}
