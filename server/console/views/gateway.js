// One gateway: its state, volumes, snapshots, bandwidth limits, request history and
// metrics charts. Lists refresh every few seconds; forms keep what is typed.

import { call } from '../api.js';
import { lineChart } from '../chart.js';
import { bytes, field, h, parseSize, sizeText, state, table, when } from '../dom.js';
import { every, flash } from '../app.js';

const DAYS = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun'];

function ms(t) {
  return when(Math.floor((t || 0) / 1000));
}

function rate(r) {
  return r ? `${bytes(r)}/s` : 'no limit';
}

// Runs a customer's action: the last message goes, errors become the new one.
async function act(fn, done) {
  flash('');
  try {
    await fn();
    if (done) await done();
  } catch (err) {
    flash(err.message);
  }
}

export async function gatewayView(id) {
  const base = `/v1/gateways/${encodeURIComponent(id)}`;
  let gateway;
  try {
    gateway = (await call('GET', base)).gateway;
  } catch (err) {
    flash(err.message);
    return h('div', {}, h('h1', {}, 'Gateway'), h('p', {}, h('a', { href: '#/gateways' }, 'Back to the gateways')));
  }
  const summary = h('dl', {});
  const volumes = h('div', {});
  const snapshots = h('div', {});
  const requests = h('div', {});
  const charts = h('div', { class: 'charts' });
  const bandwidthNow = h('p', {});

  function showSummary(g) {
    summary.replaceChildren(
      h('dt', {}, 'State'), h('dd', {}, state(g.online ? 'online' : 'offline')),
      h('dt', {}, 'Last seen'), h('dd', {}, when(g.last_seen_at)),
      h('dt', {}, 'Software version'), h('dd', {}, g.software_version || '-'),
      h('dt', {}, 'Time zone'), h('dd', {}, g.timezone),
      h('dt', {}, 'Addresses'), h('dd', {}, (g.addresses || []).join(', ') || '-'),
      h('dt', {}, 'Id'), h('dd', {}, h('code', {}, g.id)));
  }

  async function loadVolumes() {
    const r = await call('GET', `${base}/volumes`);
    knownVolumes = r.volumes;
    fillSources();
    const names = r.volumes.map((v) => v.name);
    for (const [select, load] of [[schedVolume, loadSchedule], [chapVolume, loadChap]]) {
      const chosen = select.value;
      if (names.join() !== [...select.options].map((o) => o.value).join()) {
        select.replaceChildren(...names.map((n) => h('option', { value: n }, n)));
        if (names.includes(chosen)) select.value = chosen;
        // A first volume, or the chosen one gone: show the one chosen now.
        if (select.value !== chosen) await load();
      }
    }
    volumes.replaceChildren(table(['Name', 'Size', 'State', { label: 'iSCSI', optional: true },
      { label: 'Created', optional: true }, ''],
      r.volumes.map((v) => [v.source ? h('span', {}, v.name, h('br', {}), h('span', { class: 'muted' }, sourceText(v.source)))
        : v.name, bytes(v.size), state(v.state), iscsiText(v.iscsi), ms(v.created_at_ms),
        h('span', {},
          h('button', {
            type: 'button', class: 'secondary', 'aria-label': `Snapshot ${v.name}`, disabled: v.state !== 'available',
            onclick: () => act(() => call('POST', `${base}/volumes/${encodeURIComponent(v.name)}/snapshots`), refresh),
          }, 'Snapshot'), ' ',
          h('button', {
            type: 'button', class: 'danger', 'aria-label': `Delete ${v.name}`, disabled: v.state !== 'available',
            onclick: () => {
              if (!confirm(`Delete the volume ${v.name} and all its data? This cannot be undone.`)) return;
              act(() => call('DELETE', `${base}/volumes/${encodeURIComponent(v.name)}`), refresh);
            },
          }, 'Delete'))]),
      'No volumes yet.'));
  }

  // What a volume was made from, and for a recovery point what the recovery lost.
  function sourceText(s) {
    if (!s.recovery_point) return `from snapshot ${s.snapshot} of ${s.volume}`;
    let text = `from the recovery point ${s.used ? s.used.snapshot : ''} of ${s.volume}`;
    if (s.used) text += `, taken ${when(s.used.created)}`;
    if (s.seconds_before_last_seen !== undefined) {
      text += ` (${s.seconds_before_last_seen} s before its gateway was last seen: later writes are lost)`;
    }
    return text;
  }

  // "iqn…:disk0 · CHAP mutual · 2 initiators", or "-" before the gateway reported.
  function iscsiText(i) {
    if (!i || !i.target) return '-';
    const chap = i.chap.enabled ? (i.chap.mutual ? 'CHAP mutual' : 'CHAP') : 'no CHAP';
    const n = i.initiators.length;
    return h('span', {}, h('code', {}, i.target), ` · ${chap} · ${n} initiator${n === 1 ? '' : 's'}`,
      i.initiators.length ? h('span', { class: 'muted' }, ` (${i.initiators.map((x) => `${x.name} ${x.address}`).join(', ')})`) : '',
      i.state === 'error' ? h('span', { class: 'error-text' }, ` ${i.error}`) : '');
  }

  async function loadSnapshots() {
    const r = await call('GET', `${base}/snapshots`);
    knownSnapshots = r.snapshots;
    fillSources();
    snapshots.replaceChildren(table(['Snapshot', 'Volume', 'State', { label: 'Taken', optional: true }, ''],
      r.snapshots.map((s) => [h('code', {}, s.id), s.volume, state(s.state), ms(s.created_at_ms),
        h('button', {
          type: 'button', class: 'danger', 'aria-label': `Delete snapshot ${s.id}`,
          disabled: s.state !== 'completed' && s.state !== 'failed',
          onclick: () => {
            if (!confirm(`Delete the snapshot ${s.id}?`)) return;
            act(() => call('DELETE', `${base}/snapshots/${encodeURIComponent(s.id)}`), refresh);
          },
        }, 'Delete')]),
      'No snapshots yet.'));
  }

  async function loadRequests() {
    const r = await call('GET', `${base}/requests?limit=50`);
    requests.replaceChildren(table(['Operation', 'State', 'Asked', { label: 'Attempts', optional: true }, 'Outcome'],
      r.requests.map((q) => [q.op, state(q.state), ms(q.created_at_ms), q.attempts,
        q.error ? h('span', { class: 'error-text' }, q.error.message) : (q.state === 'done' ? 'done' : '')]),
      'Nothing asked of this gateway yet.'));
  }

  async function loadMetrics() {
    const r = await call('GET', `${base}/metrics?since=${Math.floor(Date.now() / 1000) - 6 * 3600}`);
    const s = r.samples;
    const series = (key) => s.filter((x) => x[key] !== null && x[key] !== undefined).map((x) => [x.at, x[key]]);
    const pct = (v) => `${(v * 100).toFixed(1)}%`;
    charts.replaceChildren(
      lineChart('Cache hit ratio', series('cache_hit_ratio'), pct),
      lineChart('Dirty bytes', series('dirty_bytes'), bytes),
      lineChart('Upload buffer used', series('upload_buffer_used'), pct),
      lineChart('Bytes up (per interval)', series('bytes_up'), bytes),
      lineChart('Bytes down (per interval)', series('bytes_down'), bytes));
  }

  async function loadGateway() {
    gateway = (await call('GET', base)).gateway;
    showSummary(gateway);
  }

  async function refresh() {
    await act(async () => {
      await Promise.all([loadGateway(), loadVolumes(), loadSnapshots(), loadRequests()]);
    });
  }

  // Snapshot schedules, one per volume.
  const schedVolume = h('select', { name: 'schedule_volume' });
  const schedEvery = h('input', { type: 'number', name: 'every_hours', min: 1, max: 168, value: 24, required: true });
  const schedKeep = h('input', { type: 'number', name: 'keep', min: 1, max: 100, value: 7, required: true });
  const schedNow = h('p', { 'aria-live': 'polite' });
  async function loadSchedule() {
    if (!schedVolume.value) {
      schedNow.textContent = '';
      return;
    }
    try {
      const s = (await call('GET', `${base}/volumes/${encodeURIComponent(schedVolume.value)}/schedule`)).schedule;
      schedNow.textContent = `${s.volume}: a snapshot every ${s.every_hours} h, keeping the last ${s.keep}; next ${when(s.next_at)}.`;
      schedEvery.value = String(s.every_hours);
      schedKeep.value = String(s.keep);
    } catch (err) {
      if (err.status !== 404) throw err;
      schedNow.textContent = `${schedVolume.value} has no snapshot schedule.`;
    }
  }
  schedVolume.addEventListener('change', () => act(loadSchedule));
  const schedForm = h('form', {
    class: 'inline',
    onsubmit: (e) => {
      e.preventDefault();
      act(() => call('PUT', `${base}/volumes/${encodeURIComponent(schedVolume.value)}/schedule`,
        { every_hours: Number(schedEvery.value), keep: Number(schedKeep.value) }), loadSchedule);
    },
  }, field('Volume', schedVolume), field('Every (hours)', schedEvery), field('Keep the last', schedKeep),
  h('button', { type: 'submit' }, 'Save schedule'),
  h('button', {
    type: 'button', class: 'secondary',
    onclick: () => act(() => call('DELETE', `${base}/volumes/${encodeURIComponent(schedVolume.value)}/schedule`),
      loadSchedule),
  }, 'Remove schedule'));

  // iSCSI CHAP, per volume: the secrets are write-only (the API never returns them).
  const chapVolume = h('select', { name: 'chap_volume' });
  const chapUser = h('input', { name: 'initiator_user', required: true, maxlength: 64, autocomplete: 'off' });
  const chapSecret = h('input', { name: 'initiator_secret', type: 'password', required: true, minlength: 12,
    maxlength: 16, autocomplete: 'new-password' });
  const chapTargetUser = h('input', { name: 'target_user', maxlength: 64, autocomplete: 'off' });
  const chapTargetSecret = h('input', { name: 'target_secret', type: 'password', minlength: 12, maxlength: 16,
    autocomplete: 'new-password' });
  const chapNow = h('p', { 'aria-live': 'polite' });
  async function loadChap() {
    if (!chapVolume.value) {
      chapNow.textContent = '';
      return;
    }
    const i = (await call('GET', `${base}/volumes/${encodeURIComponent(chapVolume.value)}/iscsi`)).iscsi;
    chapNow.textContent = i.chap.enabled
      ? `${chapVolume.value}: CHAP ${i.chap.mutual ? `mutual (initiator ${i.chap.initiator_user}, target ${i.chap.target_user})` : `one-way (initiator ${i.chap.initiator_user})`}.`
      : `${chapVolume.value}: no CHAP; any initiator that reaches the gateway may log in.`;
    if (i.chap_request_state === 'failed') {
      chapNow.textContent += ` The last setting was NOT applied: ${i.chap_request_error}`;
    } else if (i.chap_request_state === 'pending' || i.chap_request_state === 'delivered') {
      chapNow.textContent += ' (asked; not applied yet)';
    }
  }
  chapVolume.addEventListener('change', () => act(loadChap));
  const chapForm = h('form', {
    class: 'inline',
    onsubmit: (e) => {
      e.preventDefault();
      const body = { initiator_user: chapUser.value, initiator_secret: chapSecret.value };
      if (chapTargetUser.value || chapTargetSecret.value) {
        body.target_user = chapTargetUser.value;
        body.target_secret = chapTargetSecret.value;
      }
      act(() => call('PUT', `${base}/volumes/${encodeURIComponent(chapVolume.value)}/chap`, body), async () => {
        chapSecret.value = '';
        chapTargetSecret.value = '';
        await loadChap();
        await loadRequests();
      });
    },
  }, field('Volume', chapVolume), field('Initiator user', chapUser), field('Initiator secret', chapSecret),
  field('Target user (mutual)', chapTargetUser), field('Target secret (mutual)', chapTargetSecret),
  h('button', { type: 'submit' }, 'Save CHAP'),
  h('button', {
    type: 'button', class: 'secondary',
    onclick: () => act(() => call('DELETE', `${base}/volumes/${encodeURIComponent(chapVolume.value)}/chap`),
      async () => {
        await loadChap();
        await loadRequests();
      }),
  }, 'Turn CHAP off'));

  // New volume: empty, or made from a snapshot or a volume's newest recovery point
  // (this gateway's, or another's of the account: a clone, or the recovery of a lost
  // gateway's volume). Values: "", "snap:ID", "rp:GATEWAY/VOLUME".
  const volName = h('input', { name: 'volume', required: true, pattern: '[A-Za-z0-9._\\-]+', maxlength: 64 });
  const volSize = h('input', { name: 'size', placeholder: '10G', 'aria-describedby': 'size-hint' });
  const volSource = h('select', { name: 'source' });
  let knownVolumes = [];
  let knownSnapshots = [];
  let otherVolumes = [];  // [gateway, volume] of the account's other gateways
  function fillSources() {
    const options = [['', 'Empty']];
    for (const s of knownSnapshots.filter((x) => x.state === 'completed')) {
      options.push([`snap:${s.id}`, `Snapshot ${s.id} of ${s.volume}`]);
    }
    for (const v of knownVolumes.filter((x) => x.state === 'available')) {
      options.push([`rp:${id}/${v.name}`, `Newest recovery point of ${v.name}`]);
    }
    for (const [g, v] of otherVolumes) {
      options.push([`rp:${g.id}/${v.name}`, `Newest recovery point of ${v.name} on ${g.name} (${g.online ? 'online' : 'offline'})`]);
    }
    const chosen = volSource.value;
    if (options.map((o) => o[0]).join() === [...volSource.options].map((o) => o.value).join()) return;
    volSource.replaceChildren(...options.map(([value, label]) => h('option', { value }, label)));
    if (options.some((o) => o[0] === chosen)) volSource.value = chosen;
  }
  async function loadOtherVolumes() {
    const r = await call('GET', '/v1/gateways');
    const found = [];
    for (const g of r.gateways.filter((x) => x.id !== id)) {
      for (const v of (await call('GET', `/v1/gateways/${encodeURIComponent(g.id)}/volumes`)).volumes) found.push([g, v]);
    }
    otherVolumes = found;
    fillSources();
  }
  const volForm = h('form', {
    class: 'inline',
    onsubmit: (e) => {
      e.preventDefault();
      const source = volSource.value;
      if (!(source && volSize.value === '') && Number.isNaN(parseSize(volSize.value))) {
        flash(source ? 'The size is left empty (the source\'s) or a size like 10G.'
          : 'The size is a number of bytes or a size like 10G or 512M.');
        volSize.focus();
        return;
      }
      const body = { name: volName.value };
      if (volSize.value !== '') body.size = volSize.value;
      if (source.startsWith('snap:')) body.snapshot = source.slice(5);
      if (source.startsWith('rp:')) {
        const [g, ...v] = source.slice(3).split('/');
        body.from = { gateway_id: g, volume: v.join('/') };
      }
      act(() => call('POST', `${base}/volumes`, body), async () => {
        volName.value = '';
        await refresh();
      });
    },
  }, field('Volume name', volName), field('Size', volSize), field('Made from', volSource),
  h('button', { type: 'submit' }, 'Create volume'));

  // Bandwidth limits: the standing rates and a schedule of intervals.
  const upload = h('input', { name: 'upload_rate', placeholder: 'e.g. 10M', 'aria-describedby': 'rate-hint' });
  const download = h('input', { name: 'download_rate', placeholder: 'e.g. 50M', 'aria-describedby': 'rate-hint' });
  const rows = h('div', {});
  function intervalRow(iv = {}) {
    const days = h('fieldset', {}, h('legend', {}, 'Days'), DAYS.map((d) => h('label', { class: 'day' },
      h('input', { type: 'checkbox', value: d, checked: (iv.days || []).includes(d) }), d)));
    const start = h('input', { type: 'time', value: iv.start || '08:00', required: true });
    const end = h('input', { value: iv.end || '18:00', required: true, pattern: '([01][0-9]|2[0-3]):[0-5][0-9]|24:00' });
    const up = h('input', { value: sizeText(iv.upload_rate), placeholder: 'no limit' });
    const down = h('input', { value: sizeText(iv.download_rate), placeholder: 'no limit' });
    const row = h('section', { class: 'interval' }, days,
      h('div', { class: 'inline' }, field('From', start), field('Until (HH:MM, up to 24:00)', end),
        field('Upload rate', up), field('Download rate', down),
        h('button', { type: 'button', class: 'secondary', onclick: () => row.remove() }, 'Remove interval')));
    row.read = () => ({
      days: [...days.querySelectorAll('input:checked')].map((c) => c.value),
      start: start.value, end: end.value, upload_rate: up.value || 0, download_rate: down.value || 0,
    });
    return row;
  }
  const bwForm = h('form', {
    onsubmit: (e) => {
      e.preventDefault();
      const setting = {
        upload_rate: upload.value || 0,
        download_rate: download.value || 0,
        schedule: [...rows.children].map((r) => r.read()),
      };
      act(() => call('PUT', `${base}/bandwidth`, setting), async () => {
        flash('Bandwidth limits saved; the gateway applies them now.', 'info');
        await loadBandwidth();
        await loadRequests();
      });
    },
  },
  h('div', { class: 'inline' }, field('Upload rate', upload), field('Download rate', download)),
  h('p', { id: 'rate-hint', class: 'muted' },
    'Bytes per second to and from the object store, like 512K or 10M; empty or 0 for no limit. ' +
    'Intervals below use other rates on their days and hours, in the gateway\'s time zone.'),
  rows,
  h('div', { class: 'inline' },
    h('button', { type: 'button', class: 'secondary', onclick: () => rows.append(intervalRow({ days: DAYS.slice(0, 5) })) },
      'Add interval'),
    h('button', { type: 'submit' }, 'Save limits')));

  async function loadBandwidth() {
    const b = (await call('GET', `${base}/bandwidth`)).bandwidth;
    upload.value = sizeText(b.upload_rate);
    download.value = sizeText(b.download_rate);
    rows.replaceChildren(...b.schedule.map((iv) => intervalRow(iv)));
    bandwidthNow.textContent = b.in_force
      ? `In force now (${b.timezone}): upload ${rate(b.in_force.upload_rate)}, download ${rate(b.in_force.download_rate)}.`
      : '';
  }

  showSummary(gateway);
  await refresh();
  await act(loadBandwidth);
  await act(loadSchedule);
  await act(loadChap);
  await act(loadMetrics);
  await act(loadOtherVolumes);
  every(3000, refresh, summary);
  every(15000, () => act(loadMetrics), summary);

  return h('div', {},
    h('h1', {}, gateway.name),
    h('p', {}, h('a', { href: '#/gateways' }, 'All gateways')),
    h('section', { 'aria-labelledby': 'h-summary' }, h('h2', { id: 'h-summary' }, 'Gateway'), summary),
    h('section', { 'aria-labelledby': 'h-volumes' }, h('h2', { id: 'h-volumes' }, 'Volumes'), volumes, volForm,
      h('p', { id: 'size-hint', class: 'muted' }, 'Sizes like 10G or 512M; a multiple of 1 MiB. A volume made from ' +
        'a snapshot or a recovery point can be read at once; leave its size empty for the source\'s.')),
    h('section', { 'aria-labelledby': 'h-snapshots' }, h('h2', { id: 'h-snapshots' }, 'Snapshots'), snapshots,
      h('h3', {}, 'Schedule'), schedNow, schedForm),
    h('section', { 'aria-labelledby': 'h-iscsi' }, h('h2', { id: 'h-iscsi' }, 'iSCSI access'), chapNow, chapForm,
      h('p', { class: 'muted' }, 'Secrets are 12 to 16 characters; a target user and secret make CHAP mutual. ' +
        'Initiators connect to the gateway on port 3260; the target of each volume is listed with it.')),
    h('section', { 'aria-labelledby': 'h-bandwidth' }, h('h2', { id: 'h-bandwidth' }, 'Bandwidth limits'),
      bandwidthNow, bwForm),
    h('section', { 'aria-labelledby': 'h-metrics' }, h('h2', { id: 'h-metrics' }, 'Metrics, last 6 hours'), charts),
    h('section', { 'aria-labelledby': 'h-requests' }, h('h2', { id: 'h-requests' }, 'Request history'), requests));
}
