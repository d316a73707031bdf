// Small SVG charts for the auditor's page: bars with 95% intervals, and a treemap. Built with
// DOM calls (the Content-Security-Policy allows no inline styles or scripts).
const SVG = 'http://www.w3.org/2000/svg';

function el(name, attributes = {}, text) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attributes)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

const percent = (x) => `${(100 * x).toFixed(1)}%`;

// Charts are laid out in the pixels they will occupy (no scaling down of a wide drawing), so that
// their text keeps its size on a phone.
export function chartWidth() {
  const main = document.querySelector('main');
  if (!main) return 760;
  const style = getComputedStyle(main);
  const inner = main.clientWidth - Number.parseFloat(style.paddingLeft) - Number.parseFloat(style.paddingRight);
  return Math.round(Math.min(900, Math.max(280, inner)));
}

// The drawing a chart goes in: `width` × `height` pixels, named for screen readers.
function chartRoot(width, height, title, kind) {
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width, role: 'img', 'aria-label': title, class: kind });
  svg.append(el('title', {}, title));
  return svg;
}

// Horizontal bars: one row per cell {label, share, ci95: [lo, hi]} or {label, suppressed}. On a
// narrow screen each label goes on its own line above its bar.
export function barChart(cells, title) {
  const width = chartWidth();
  const narrow = width < 560;
  const labelWidth = narrow ? 0 : 210;
  const rowHeight = narrow ? 40 : 24;
  const barTop = narrow ? 18 : 0; // where the bar's line starts within its row
  const barWidth = width - labelWidth - (narrow ? 160 : 200);
  const max = Math.max(0.05, ...cells.filter((c) => !c.suppressed).map((c) => c.ci95[1]));
  const svg = chartRoot(width, cells.length * rowHeight + 8, title, 'chart');
  cells.forEach((c, i) => {
    const y = i * rowHeight + 4;
    const label = narrow
      ? el('text', { x: 0, y: y + 14, class: 'label' }, c.label)
      : el('text', { x: labelWidth - 6, y: y + 15, 'text-anchor': 'end', class: 'label' }, c.label);
    svg.append(label);
    const line = y + barTop; // the top of the bar's line
    if (c.suppressed) {
      const why = narrow ? 'too few reports' : 'too few reports to publish reliably';
      const text = c.reason === 'too few reports' ? 'not tested: too few reports' : `not published: ${why}`;
      svg.append(el('text', { x: labelWidth + 4, y: line + 15, class: 'suppressed' }, text));
      return;
    }
    const x = (v) => labelWidth + (barWidth * v) / max;
    svg.append(
      el('rect', { x: labelWidth, y: line + 4, width: Math.max(1, x(c.share) - labelWidth), height: 14, class: 'bar' }),
    );
    const middle = line + 11;
    svg.append(el('line', { x1: x(c.ci95[0]), x2: x(c.ci95[1]), y1: middle, y2: middle, class: 'whisker' }));
    for (const end of c.ci95)
      svg.append(el('line', { x1: x(end), x2: x(end), y1: line + 6, y2: line + 16, class: 'whisker' }));
    svg.append(
      el(
        'text',
        { x: x(c.ci95[1]) + 6, y: line + 15, class: 'value' },
        `${percent(c.share)} (${percent(c.ci95[0])}–${percent(c.ci95[1])})`,
      ),
    );
  });
  return svg;
}

// Squarified-enough treemap: slice-and-dice by level, area = estimated share. `nodes` are
// {label, share, children}; what is not published shows as one grey remainder.
export function treemap(nodes, title) {
  const width = Math.min(640, chartWidth());
  const height = width < 560 ? 420 : 360;
  const svg = chartRoot(width, height, title, 'chart treemap');
  layout(svg, nodes, 0, 0, width, height, 0);
  return svg;
}

function layout(svg, nodes, x, y, w, h, depth) {
  const total = nodes.reduce((s, n) => s + n.share, 0);
  if (total <= 0) return;
  let offset = 0;
  const horizontal = w >= h;
  for (const node of nodes) {
    const part = node.share / total;
    const [nx, ny, nw, nh] = horizontal ? [x + offset * w, y, part * w, h] : [x, y + offset * h, w, part * h];
    offset += part;
    const group = el('g');
    const rect = el('rect', {
      x: nx,
      y: ny,
      width: Math.max(0, nw - 1),
      height: Math.max(0, nh - 1),
      class: `cell depth${depth}${node.rest ? ' rest' : ''}`,
    });
    rect.append(el('title', {}, `${node.label}: ${percent(node.share)}`));
    group.append(rect);
    if (nw > 70 && nh > 20) {
      group.append(el('text', { x: nx + 4, y: ny + 15, class: 'cell-label' }, shorten(node.label, nw)));
    }
    svg.append(group);
    if (node.children?.length)
      layout(svg, node.children, nx + 2, ny + 18, Math.max(0, nw - 4), Math.max(0, nh - 20), depth + 1);
  }
}

function shorten(text, width) {
  const fits = Math.floor(width / 8);
  return text.length > fits ? `${text.slice(0, Math.max(1, fits - 1))}…` : text;
}

// A 2-D map of topics: one circle per topic at its position (`x`, `y` in any units), its area
// proportional to `size`, coloured by `group` (0–3); the largest are labelled where a label does
// not cover another. Beside the tree on a wide screen, below it on a narrow one.
export function topicMap(points, title) {
  const full = chartWidth();
  const width = Math.round(full >= 1000 ? (full - 16) / 2 : Math.min(640, full));
  const height = Math.round(width * 0.8);
  const pad = 30;
  const xs = points.map((p) => p.x);
  const ys = points.map((p) => p.y);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const sx = (x) => pad + ((x - x0) / (x1 - x0 || 1)) * (width - 2 * pad);
  const sy = (y) => pad + ((y - y0) / (y1 - y0 || 1)) * (height - 2 * pad);
  const largest = Math.max(...points.map((p) => p.size), 1e-9);
  const radius = (p) => 3 + 16 * Math.sqrt(p.size / largest);
  const svg = chartRoot(width, height, title, 'chart map');
  const bySize = [...points].sort((a, b) => b.size - a.size);
  for (const p of bySize) {
    const circle = el('circle', { cx: sx(p.x), cy: sy(p.y), r: radius(p), class: `dot group${p.group % 4}` });
    circle.append(el('title', {}, p.tooltip ?? p.label));
    svg.append(circle);
  }
  const placed = [];
  const overlaps = (a, b) => a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
  for (const p of bySize.slice(0, width < 560 ? 8 : 16)) {
    const text = shorten(p.label, 160);
    const w = text.length * 7;
    const y = sy(p.y) - radius(p) - 3;
    const box = { x0: sx(p.x) - w / 2, x1: sx(p.x) + w / 2, y0: y - 13, y1: y + 2 };
    if (box.x0 < 0 || box.x1 > width || box.y0 < 0 || placed.some((b) => overlaps(b, box))) continue;
    placed.push(box);
    svg.append(el('text', { x: sx(p.x), y, 'text-anchor': 'middle', class: 'label' }, text));
  }
  return svg;
}
