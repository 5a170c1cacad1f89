// A small SVG line chart of transfer rates over the last hour (no library).
import { fmtRate, svgEl } from './api.js';

const W = 720;
const H = 180;
const PAD = { l: 64, r: 12, t: 12, b: 24 };

/** Draw series [{cls, points: [{t (s), v (bytes/s)}]}] spanning [t0, t1] into `box`. */
export function drawChart(box, series, t0, t1) {
  const svg = svgEl('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none' });
  const max = niceCeil(Math.max(1024, ...series.flatMap((s) => s.points.map((p) => p.v))));
  const x = (t) => PAD.l + ((t - t0) / (t1 - t0)) * (W - PAD.l - PAD.r);
  const y = (v) => H - PAD.b - (v / max) * (H - PAD.t - PAD.b);
  for (let i = 0; i <= 4; i += 1) {
    const v = (max * i) / 4;
    svg.append(svgEl('line', { class: i ? 'grid' : 'axis', x1: PAD.l, x2: W - PAD.r, y1: y(v), y2: y(v) }));
    const label = svgEl('text', { x: PAD.l - 6, y: y(v) + 4, 'text-anchor': 'end' });
    label.textContent = fmtRate(v);
    svg.append(label);
  }
  for (const m of [60, 45, 30, 15, 0]) {
    const t = t1 - m * 60;
    const label = svgEl('text', { x: x(t), y: H - 6, 'text-anchor': m === 0 ? 'end' : 'middle' });
    label.textContent = m ? `-${m} min` : 'now';
    svg.append(label);
  }
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join('');
    if (s.area) {
      svg.append(svgEl('path', { class: `${s.cls}-area`, d: `${d}L${x(s.points.at(-1).t).toFixed(1)},${y(0)}L${x(s.points[0].t).toFixed(1)},${y(0)}Z` }));
    }
    svg.append(svgEl('path', { class: `${s.cls}-line`, d, 'data-series': s.cls }));
  }
  box.replaceChildren(svg);
}

/** The smallest 2^k KiB/MiB/... step at or above `v`, so the axis reads in round numbers. */
function niceCeil(v) {
  let unit = 1;
  while (v / unit >= 1024) unit *= 1024;
  let m = 1;
  while (m * unit < v) m *= 2;
  return m * unit;
}
