// Building the page from data without innerHTML: text is always text.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export function field(label, input) {
  return h('label', {}, label, input);
}

export function table(headers, rows, empty) {
  if (!rows.length) return h('p', { class: 'muted' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', {},
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', class: x.optional ? 'optional' : null }, x.label || x)))),
      h('tbody', {}, rows.map((r) => h('tr', {}, r.map((cell, i) =>
        h('td', { class: headers[i].optional ? 'optional' : null }, cell)))))));
}

export function state(text) {
  return h('span', { class: `state ${text}` }, text);
}

export function bytes(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let v = Number(n) || 0;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

export function when(seconds) {
  if (!seconds) return 'never';
  return new Date(seconds * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

// "10G", "512M", "4096" → bytes, or NaN.
export function parseSize(text) {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?b)?\s*$/i.exec(text || '');
  if (!m) return NaN;
  const power = { '': 0, k: 1, m: 2, g: 3, t: 4, p: 5 }[m[2].toLowerCase()];
  return Math.round(Number(m[1]) * 1024 ** power);
}

// 10485760 → "10M", 1536 → "1536": the shortest exact way to type a size back.
export function sizeText(n) {
  let v = Number(n) || 0;
  if (v === 0) return '';
  for (const unit of ['', 'K', 'M', 'G', 'T']) {
    if (v % 1024 !== 0 || unit === 'T') return `${v}${unit}`;
    v /= 1024;
  }
  return String(n);
}
