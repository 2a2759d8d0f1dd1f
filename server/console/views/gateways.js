// The gateway list and activation.

import { call } from '../api.js';
import { field, h, state, table, when } from '../dom.js';
import { every, flash, go } from '../app.js';

export async function gatewaysView() {
  const box = h('div', {});
  async function load() {
    try {
      const r = await call('GET', '/v1/gateways');
      box.replaceChildren(table(
        ['Name', 'State', { label: 'Last seen', optional: true }, { label: 'Version', optional: true }, 'Id'],
        r.gateways.map((g) => [
          h('a', { href: `#/gateways/${encodeURIComponent(g.id)}` }, g.name),
          state(g.online ? 'online' : 'offline'),
          when(g.last_seen_at), g.software_version, h('code', {}, g.id)]),
        'No gateways yet. Start a gateway, open its local page, and activate it with the key it shows.'));
    } catch (err) {
      flash(err.message);
    }
  }
  await load();
  every(5000, load, box);
  return h('div', {}, h('h1', {}, 'Gateways'), box,
    h('p', {}, h('a', { href: '#/activate' }, 'Activate a gateway')));
}

const ZONES = (() => {
  try {
    return Intl.supportedValuesOf('timeZone');
  } catch (e) {
    return ['UTC'];
  }
})();

export function activateView(params) {
  const key = h('input', {
    name: 'activation_key', required: true, autocomplete: 'off', spellcheck: 'false',
    value: params.get('key') || '', 'aria-describedby': 'key-hint',
  });
  const name = h('input', { name: 'name', required: true, maxlength: 100 });
  const zone = h('select', { name: 'timezone' },
    ['UTC', ...ZONES.filter((z) => z !== 'UTC')].map((z) => h('option', { value: z }, z)));
  const local = Intl.DateTimeFormat().resolvedOptions().timeZone;
  if (ZONES.includes(local)) zone.value = local;
  const form = h('form', {
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const r = await call('POST', '/v1/gateways/activate',
          { activation_key: key.value, name: name.value, timezone: zone.value });
        flash(`Gateway ${r.gateway.name} ${r.reactivated ? 're-activated' : 'activated'}.`, 'info');
        go(`#/gateways/${encodeURIComponent(r.gateway.id)}`);
      } catch (err) {
        flash(err.message);
        key.focus();
      }
    },
  },
  field('Activation key', key),
  h('p', { id: 'key-hint', class: 'muted' }, 'The key the gateway shows on its local page, like ABCD-EFGH-JKMN-PQ23.'),
  field('Gateway name', name), field('Time zone', zone),
  h('button', { type: 'submit' }, 'Activate'));
  return h('div', {}, h('h1', {}, 'Activate a gateway'), form);
}
