// A small line chart in SVG: one series over time, with its title and range as text
// (the numbers are in the figure's caption and title for screen readers).

import { h } from './dom.js';

const NS = 'http://www.w3.org/2000/svg';

export function lineChart(title, points, format) {
  const caption = h('figcaption', {}, title);
  if (points.length === 0) {
    return h('figure', {}, caption, h('p', { class: 'muted' }, 'No samples yet.'));
  }
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs);
  const yMax = Math.max(...ys, 0);
  const yMin = Math.min(...ys, 0);
  const W = 300;
  const H = 100;
  const sx = (x) => (x1 === x0 ? W / 2 : ((x - x0) / (x1 - x0)) * W);
  const sy = (y) => (yMax === yMin ? H / 2 : H - ((y - yMin) / (yMax - yMin)) * H);
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'chart');
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  svg.setAttribute('preserveAspectRatio', 'none');
  svg.setAttribute('role', 'img');
  const last = ys[ys.length - 1];
  svg.setAttribute('aria-label', `${title}: latest ${format(last)}, highest ${format(yMax)}, ${points.length} samples`);
  const line = document.createElementNS(NS, 'polyline');
  line.setAttribute('points', points.map((p) => `${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(' '));
  svg.append(line);
  return h('figure', {}, caption, svg,
    h('p', { class: 'muted' }, `latest ${format(last)} · highest ${format(yMax)} · ${points.length} samples`));
}
