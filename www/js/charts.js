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

// Horizontal bars: one row per cell {label, share, ci95: [lo, hi]} or {label, suppressed}.
export function barChart(cells, title) {
  const rowHeight = 22,
    labelWidth = 210,
    width = 760,
    barWidth = width - labelWidth - 200;
  const max = Math.max(0.05, ...cells.filter((c) => !c.suppressed).map((c) => c.ci95[1]));
  const svg = el('svg', {
    viewBox: `0 0 ${width} ${cells.length * rowHeight + 8}`,
    role: 'img',
    'aria-label': title,
    class: 'chart',
  });
  svg.append(el('title', {}, title));
  cells.forEach((c, i) => {
    const y = i * rowHeight + 4;
    svg.append(el('text', { x: labelWidth - 6, y: y + 14, 'text-anchor': 'end', class: 'label' }, c.label));
    if (c.suppressed) {
      svg.append(
        el(
          'text',
          { x: labelWidth + 4, y: y + 14, class: 'suppressed' },
          c.reason === 'too few reports'
            ? 'not tested: too few reports'
            : 'not published: too few reports to publish reliably',
        ),
      );
      return;
    }
    const x = (v) => labelWidth + (barWidth * v) / max;
    svg.append(
      el('rect', {
        x: labelWidth,
        y: y + 3,
        width: Math.max(1, x(c.share) - labelWidth),
        height: rowHeight - 8,
        class: 'bar',
      }),
    );
    svg.append(
      el('line', {
        x1: x(c.ci95[0]),
        x2: x(c.ci95[1]),
        y1: y + rowHeight / 2 - 1,
        y2: y + rowHeight / 2 - 1,
        class: 'whisker',
      }),
    );
    for (const end of c.ci95)
      svg.append(el('line', { x1: x(end), x2: x(end), y1: y + 5, y2: y + rowHeight - 7, class: 'whisker' }));
    svg.append(
      el(
        'text',
        { x: x(c.ci95[1]) + 6, y: y + 14, class: 'value' },
        `${percent(c.share)} (${percent(c.ci95[0])}–${percent(c.ci95[1])})`,
      ),
    );
  });
  return svg;
}

// Squarified-enough treemap: slice-and-dice by level, area = estimated share. `nodes` are
// {label, share, children}; what is not published shows as one grey remainder.
export function treemap(nodes, title, width = 640, height = 360) {
  const svg = el('svg', {
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': title,
    class: 'chart treemap',
  });
  svg.append(el('title', {}, title));
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
    if (nw > 70 && nh > 18) {
      group.append(el('text', { x: nx + 4, y: ny + 14, class: 'cell-label' }, shorten(node.label, nw)));
    }
    svg.append(group);
    if (node.children?.length)
      layout(svg, node.children, nx + 2, ny + 18, Math.max(0, nw - 4), Math.max(0, nh - 20), depth + 1);
  }
}

function shorten(text, width) {
  const fits = Math.floor(width / 7);
  return text.length > fits ? `${text.slice(0, Math.max(1, fits - 1))}…` : text;
}
