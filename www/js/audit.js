// The auditor's page: the list of releases; for one, its signature checked in the page (the
// wasm client's Ed25519), the topic hierarchy as a tree and a treemap, distributions with 95%
// intervals, the cross-language comparison, discovered clusters and the privacy panel.

import { BUNDLE } from '/js/bundle.js';
import { barChart, chartWidth, topicMap, treemap } from '/js/charts.js';
import init, { verifyRelease } from '/pkg/chorus_client.js';

const $ = (id) => document.getElementById(id);
const percent = (x) => `${(100 * x).toFixed(1)}%`;

function node(tag, text, attributes = {}) {
  const n = document.createElement(tag);
  if (text !== undefined) n.textContent = text;
  for (const [k, v] of Object.entries(attributes)) n.setAttribute(k, v);
  return n;
}

function table(headers, rows, caption) {
  const t = node('table');
  if (caption) t.append(node('caption', caption));
  const head = node('tr');
  for (const h of headers) head.append(node('th', h, { scope: 'col' }));
  t.append(node('thead'));
  t.tHead.append(head);
  const body = node('tbody');
  for (const r of rows) {
    const tr = node('tr');
    for (const c of r) tr.append(node('td', String(c)));
    body.append(tr);
  }
  t.append(body);
  // A scrolling region: reachable from the keyboard, and named for screen readers.
  const wrap = node('section', undefined, {
    class: 'table-wrap',
    tabindex: '0',
    'aria-label': caption ?? headers.join(', '),
  });
  wrap.append(t);
  return wrap;
}

async function verify(id, text) {
  try {
    await init({ module_or_path: BUNDLE });
    const key = await fetchText('/api/v1/public-key');
    const verified = verifyRelease(text, key);
    if (verified !== id) throw new Error(`the document is release ${verified}, not ${id}`);
    const fingerprint = JSON.parse(key).public_key;
    $('signature').textContent =
      `Signature verified in this page: release ${id} was signed with this server's Ed25519 key and has not ` +
      'changed since, by a single byte.';
    $('signature').dataset.state = 'verified';
    $('fingerprint').textContent = fingerprint;
    $('trust').hidden = false;
  } catch (error) {
    $('signature').textContent = `The signature does NOT verify: ${error.message ?? error}`;
    $('signature').dataset.state = 'failed';
  }
}

function topicsSection(topics, crosstabs) {
  const method = topics.method.charAt(0).toUpperCase() + topics.method.slice(1);
  $('topics-method').textContent = `${method}. Codebook: ${topics.source}.`;
  const levels = topics.levels;
  const children = (level, parentId) => (levels[level] ?? []).filter((t) => t.parent === parentId);
  const published = (t) => !t.suppressed;
  // Treemap: the published estimates, what is suppressed folded into a grey remainder.
  const build = (level, parentId, parentShare) => {
    const kids = children(level, parentId);
    const shown = kids
      .filter(published)
      .map((t) => ({ label: t.name, share: Math.max(0, t.share), children: build(level + 1, t.value, t.share) }));
    const sum = shown.reduce((s, n) => s + n.share, 0);
    if (parentShare !== null && shown.length && parentShare - sum > 0.005)
      shown.push({
        label: 'not published (too few reports to publish reliably)',
        share: parentShare - sum,
        rest: true,
      });
    return level + 1 < levels.length || shown.length ? shown : [];
  };
  const top = build(0, null, null);
  const rest = 1 - top.reduce((s, n) => s + n.share, 0);
  if (rest > 0.005) top.push({ label: 'not published (too few reports to publish reliably)', share: rest, rest: true });
  $('treemap').replaceChildren(treemap(top, 'Topic treemap: area is the estimated share'));
  // Tree: every topic, its public name, keywords and example, its estimate or "below k".
  const tree = (level, parentId) => {
    const list = node('ul', undefined, { class: 'tree' });
    for (const t of children(level, parentId)) {
      const item = node('li');
      const estimate = t.suppressed ? withheld(t) : `${percent(t.share)} (${percent(t.ci95[0])}–${percent(t.ci95[1])})`;
      const label = `${t.name} — ${estimate}`;
      if (level + 1 < levels.length) {
        const details = node('details');
        details.append(node('summary', label));
        const about = t.description ? `${t.description} ` : '';
        details.append(
          node('p', `${about}Keywords: ${t.keywords.join(', ')}. Public example: “${t.example}”`, { class: 'note' }),
        );
        if (level === 0) details.append(languagesWithin(t, crosstabs));
        details.append(tree(level + 1, t.value));
        item.append(details);
      } else {
        item.append(
          node('span', label),
          node('span', ` — ${t.description || t.keywords.join(', ')}`, { class: 'note' }),
        );
      }
      list.append(item);
    }
    return list;
  };
  $('tree').replaceChildren(tree(0, null));
}

// The languages within a top-level topic, where the release publishes the topic × language
// cross-tab's cells: each as a share of the topic, its interval conservative (the cell's interval
// over the far ends of the topic's).
function languagesWithin(topic, crosstabs) {
  const tab = Object.entries(crosstabs).find(([name]) => name.startsWith('topic_level1'))?.[1];
  const published = !topic.suppressed && topic.share > 0;
  const cells = (tab?.cells ?? []).filter((c) => published && c.row === topic.value && !c.suppressed);
  // A share of the topic lies in [0, 1] whatever the noise did to either estimate.
  const clamp = (x) => Math.min(1, Math.max(0, x));
  const shown = cells
    .sort((a, b) => b.share - a.share)
    .map((c) => {
      const share = clamp(c.share / topic.share);
      const low = Math.min(share, clamp(c.ci95[0] / topic.ci95[1]));
      const high = topic.ci95[0] > 0 ? Math.max(share, clamp(c.ci95[1] / topic.ci95[0])) : 1;
      return `${c.column} ${percent(share)} (${percent(low)}–${percent(high)})`;
    });
  const text = shown.length
    ? `Languages within this topic: ${shown.join(', ')}; the others are not published (too few reports).`
    : 'Languages within this topic: none published yet (too few reports to publish reliably).';
  return node('p', text, { class: 'note languages-within', 'data-cells': String(shown.length) });
}

// A withheld cell is not a zero: say why it is not shown.
function withheld(cell) {
  return cell.reason === 'too few reports'
    ? 'not tested: too few reports'
    : 'not published: too few reports to publish reliably';
}

// Published cells by share, largest first, then the withheld ones.
function largestFirst(cells) {
  const rank = (c) => (c.suppressed ? -1 : c.share);
  return [...cells].sort((a, b) => rank(b) - rank(a));
}

function cellsOf(cells, label = (c) => c.value) {
  return cells.map((c) => ({ ...c, label: label(c) }));
}

function languagesSection(release) {
  const out = [];
  for (const [name, tab] of Object.entries(release.crosstabs ?? {})) {
    // The share of each column (language) and row overall, from the published marginals.
    const rowShare = {};
    if (name.startsWith('topic_level')) {
      const level = Number(name.match(/topic_level(\d)/)[1]) - 1;
      for (const t of release.topics?.levels?.[level] ?? []) if (!t.suppressed) rowShare[t.value] = t;
    } else {
      // The cross-tab's rows are the categories as the devices report them.
      for (const c of release.facets?.category?.cells ?? [])
        if (!c.suppressed) rowShare[c.value] = { ...c, name: c.value };
    }
    const languageShare = {};
    for (const c of release.facets?.language?.cells ?? []) if (!c.suppressed) languageShare[c.value] = c;
    // Ratio = cell / (language × row). Its interval is conservative: the cell's interval
    // divided by the far ends of the language's and the row's intervals (all three are noisy).
    const ratio = (x) => (Number.isFinite(x) ? x.toFixed(2) : '∞');
    const rows = [];
    for (const c of tab.cells) {
      const row = rowShare[c.row],
        language = languageShare[c.column];
      if (c.suppressed || !row || !language) continue;
      const point = c.share / language.share / row.share;
      const low = c.ci95[0] / (language.ci95[1] * row.ci95[1]);
      const high = language.ci95[0] > 0 && row.ci95[0] > 0 ? c.ci95[1] / (language.ci95[0] * row.ci95[0]) : Infinity;
      rows.push([
        row.name,
        c.column,
        percent(Math.min(1, c.share / language.share)),
        percent(row.share),
        `${ratio(point)} (${ratio(low)}–${ratio(high)})`,
      ]);
    }
    out.push(
      rows.length
        ? table(
            ['row', 'language', 'share within the language', 'share overall', 'ratio (95% interval)'],
            rows,
            name.replaceAll('_', ' '),
          )
        : node('p', `${name.replaceAll('_', ' ')}: no cell is reliably above k yet.`, { class: 'note' }),
    );
  }
  $('languages').replaceChildren(...out);
}

function discoverySection(discovery) {
  if (!discovery) return $('discovery').replaceChildren(node('p', 'This study reports no embedding.'));
  const parts = [
    node('p', `${discovery.method}. Noise σ = ${discovery.sigma.toFixed(2)} per coordinate.`, { class: 'note' }),
  ];
  if (!discovery.clusters.length) parts.push(node('p', discovery.note));
  else {
    parts.push(
      table(
        ['share (± SE)', 'nearest categories', 'nearest codebook topics'],
        discovery.clusters.map((c) => [
          `${percent(c.share)} ± ${percent(c.share_se)}`,
          c.names.map(([n, p]) => `${n} (${p})`).join(', '),
          (c.topics ?? []).map(([, n]) => n).join('; '),
        ]),
      ),
    );
  }
  $('discovery').replaceChildren(...parts);
}

function plausibilitySection(plausibility) {
  const flagged = plausibility.checks.filter((c) => c.flagged);
  const verdict = flagged.length
    ? `Flagged: ${flagged.map((c) => c.name).join(', ')}. Some reports are very unlikely to come from honest ` +
      'devices; read every figure of this release with that in mind.'
    : 'No check is flagged: nothing departs from what honest devices send.';
  $('plausibility').replaceChildren(
    node('p', verdict, flagged.length ? { class: 'error' } : {}),
    node('p', plausibility.method, { class: 'note' }),
    table(
      ['check', 'what honest devices do', 'statistic', 'p-value', 'flagged'],
      plausibility.checks.map((c) => [c.name, c.what, c.statistic, c.p_value.toPrecision(2), c.flagged ? 'yes' : 'no']),
      'Plausibility checks',
    ),
  );
}

function privacySection(release) {
  const p = release.privacy;
  const parts = [
    node(
      'p',
      `Per report: ε = ${p.per_report.epsilon.toFixed(3)}, δ = ${p.per_report.delta}. Per contributor (at most ` +
        `${p.reports_per_contributor} report${p.reports_per_contributor === 1 ? '' : 's'}): ε = ` +
        `${p.contributor.epsilon.toFixed(3)}, δ = ${p.contributor.delta} (${p.composition} composition); a device ` +
        `spends at most ε = ${p.lifetime_epsilon_cap ?? '(no cap)'} over every version of the study. ` +
        `${release.publication.rule}`,
    ),
    table(
      ['channel', 'mechanism', 'ε', 'values', 'pool'],
      p.channels.map((c) => [
        c.channel,
        c.oracle.kind,
        c.oracle.epsilon.toFixed(3),
        c.values.length,
        c.pool ?? 'every report',
      ]),
      'Local mechanisms (on each device)',
    ),
  ];
  if (p.embedding)
    parts.push(
      node(
        'p',
        `Embedding: ${p.embedding.dimensions} public principal components, clipped to norm ${p.embedding.clip}, ` +
          `Gaussian noise σ = ${p.embedding.sigma.toFixed(3)}.`,
      ),
    );
  const ledger = release.ledger;
  const spent =
    `ε = ${Number(ledger.central_epsilon_spent).toFixed(2)} of ${ledger.central_epsilon_total} spent by ` +
    `every release of this study version; this release spent ε = ${ledger.central_epsilon_this_release}`;
  parts.push(
    table(
      ['release', 'quantity', 'mechanism', 'ε', 'sensitivity', 'scale'],
      ledger.central.map((e) => [e.release, e.quantity, e.mechanism, e.epsilon, e.sensitivity, e.scale]),
      `Central ledger (${spent})`,
    ),
  );
  if (release.counts.republished_from)
    parts.push(
      node(
        'p',
        `The central budget is spent: these counts are those of release ${release.counts.republished_from}, ` +
          `published again without new noise.`,
        { class: 'note' },
      ),
    );
  $('privacy').replaceChildren(...parts);
}

// A share and its interval in whole percent, as the findings say it: "22% (18–26%)".
const whole = (x) => Math.round(100 * x);
const spoken = (c) => `${whole(c.share)}% (${whole(c.ci95[0])}–${whole(c.ci95[1])}%)`;

// The study as the server serves it now (null when it cannot): its category names, and for the
// map its public codebook when it is the version the release counted.
async function servedStudy(study) {
  try {
    const text = await fetchText(`/api/v1/studies/${encodeURIComponent(study.id)}`);
    if (text !== null) return JSON.parse(text);
  } catch (_error) {
    // The ids are readable enough, and the tree needs no map.
  }
  return null;
}

// The first two principal components of some vectors (power iteration on the centred rows):
// where each lands, for a map.
function project2d(vectors) {
  const n = vectors.length;
  const dim = vectors[0].length;
  const mean = Array.from({ length: dim }, (_, j) => vectors.reduce((s, v) => s + v[j], 0) / n);
  const rows = vectors.map((v) => v.map((x, j) => x - mean[j]));
  const axes = [];
  for (let k = 0; k < 2; k++) {
    let axis = Array.from({ length: dim }, (_, j) => Math.cos(j + k)); // fixed start: a stable map
    for (let iteration = 0; iteration < 100; iteration++) {
      const scores = rows.map((r) => r.reduce((s, x, j) => s + x * axis[j], 0));
      const next = axis.map((_, j) => rows.reduce((s, r, i) => s + r[j] * scores[i], 0));
      for (const a of axes) {
        const along = next.reduce((s, x, j) => s + x * a[j], 0);
        for (let j = 0; j < dim; j++) next[j] -= along * a[j];
      }
      const norm = Math.hypot(...next) || 1;
      axis = next.map((x) => x / norm);
    }
    axes.push(axis);
  }
  return rows.map((r) => axes.map((a) => r.reduce((s, x, j) => s + x * a[j], 0)));
}

// The leaves of the public codebook on a map (their centroids' first two principal components),
// each circle as large as the topic's share of the public corpus the codebook was built from,
// coloured by top-level topic; the release's estimate is in each circle's tooltip and in the tree.
function mapOfTopics(topics, codebook) {
  const leaves = codebook.levels[codebook.levels.length - 1];
  const top = (leafIndex) => {
    let index = leafIndex;
    for (let level = codebook.levels.length - 1; level > 0; level--) index = codebook.levels[level][index].parent;
    return index;
  };
  const estimates = Object.fromEntries(topics.levels[topics.levels.length - 1].map((t) => [t.value, t]));
  const positions = project2d(leaves.map((l) => l.centroid));
  const points = leaves.map((leaf, i) => {
    const estimate = estimates[leaf.id];
    const published = estimate && !estimate.suppressed;
    return {
      x: positions[i][0],
      y: positions[i][1],
      size: leaf.public_share,
      group: top(i),
      label: leaf.name,
      tooltip: `${leaf.name}: ${published ? percent(estimate.share) : withheld(estimate ?? {})}`,
    };
  });
  return topicMap(
    points,
    "Map of the codebook's leaf topics: nearby topics are alike; area is the topic's share of the public corpus",
  );
}

// Three to five sentences a reader can take away, generated from the release: the largest
// categories and topic with their intervals, how many stand behind them, and what to keep in mind.
function findings(release, names) {
  const category = release.facets.category;
  const mix = (category.debiased ?? category.cells).filter((c) => !c.suppressed).sort((a, b) => b.share - a.share);
  const name = (id) => (names[id] ?? id.replaceAll('_', ' ')).toLowerCase();
  const sentences = [];
  if (mix.length) {
    const parts = mix.slice(0, 3).map((c, i) => `${spoken(c)} ${i === 0 ? 'were about' : 'about'} ${name(c.value)}`);
    const list = parts.length > 1 ? `${parts.slice(0, -1).join(', ')} and ${parts[parts.length - 1]}` : parts[0];
    sentences.push(`Among the conversations contributed, ${list}.`);
  } else {
    sentences.push('Too few reports stand behind any category share to publish it reliably yet.');
  }
  const top = (release.topics?.levels?.[0] ?? []).filter((t) => !t.suppressed).sort((a, b) => b.share - a.share)[0];
  if (top) sentences.push(`The largest topic was “${top.name}”, at ${spoken(top)}.`);
  sentences.push(
    `These are estimates from ${release.counts.reports} noisy reports by about ${release.counts.contributors} ` +
      `contributors: each range is where the true share lies with 95% confidence.`,
  );
  sentences.push(
    release.plausibility.flagged
      ? 'A plausibility check is flagged: some reports look unlike those honest devices send.'
      : 'No check suggests made-up reports.',
  );
  if (release.study.access === 'open') sentences.push(release.study.who_contributed);
  if (release.demo) sentences.push('Demo data: public conversations, not real contributors.');
  return sentences;
}

// Text fetched once per URL: drawing a release again (after a resize) reads nothing again.
const fetched = new Map();
function fetchText(url) {
  if (!fetched.has(url))
    fetched.set(
      url,
      fetch(url).then((r) => (r.ok ? r.text() : null)),
    );
  return fetched.get(url);
}

// The release shown, and the width its charts were drawn for: a window resized well away from
// it (a phone turned) draws them again, so their text keeps its size.
let shown = null;
let drawnFor = 0;
let resizing;
window.addEventListener('resize', () => {
  clearTimeout(resizing);
  resizing = setTimeout(() => {
    if (shown && Math.abs(chartWidth() - drawnFor) > 40) show(shown).catch(() => {});
  }, 250);
});

async function show(id) {
  shown = id;
  drawnFor = chartWidth();
  // Set once every section is drawn and the signature checked (the check can finish first).
  delete $('release').dataset.shown;
  const text = await fetchText(`/api/v1/releases/${encodeURIComponent(id)}`);
  if (text === null) throw new Error(`no release ${id}`);
  const release = JSON.parse(text).release;
  $('release').hidden = false;
  $('release-title').textContent = `${release.study.title}: release ${release.id}`;
  $('demo').hidden = !release.demo;
  $('counts').textContent =
    `Cut ${release.created} from ${release.counts.reports} reports by ${release.counts.contributors} contributors ` +
    `(counts with central differential privacy); study version ${release.study.version}.`;
  $('download-json').href = `/api/v1/releases/${encodeURIComponent(id)}`;
  $('download-release').href = `/api/v1/releases/${encodeURIComponent(id)}`;
  $('download-csv').href = `/api/v1/releases/${encodeURIComponent(id)}/csv`;
  const verifying = verify(id, text);
  const served = await servedStudy(release.study);
  const names = Object.fromEntries((served?.categories ?? []).map((c) => [c.id, c.name]));
  $('findings').replaceChildren(...findings(release, names).map((t) => node('li', t)));
  if (release.topics) topicsSection(release.topics, release.crosstabs ?? {});
  const sameCodebook = served?.codebook && served.version === release.study.version;
  const map = release.topics && sameCodebook ? mapOfTopics(release.topics, served.codebook) : null;
  const legend =
    `The map places the ${served?.codebook?.levels.at(-1).length} leaf topics of the public codebook by ` +
    'meaning: nearby topics are alike, a ' +
    "circle's area is the topic's share of the public corpus, its colour its top-level topic. Point at a circle " +
    "for this release's estimate; the tree beside it has them all.";
  // The colours: one per top-level topic, named as in the tree.
  const colours = node('p', undefined, { class: 'note' });
  for (const [i, t] of (served?.codebook?.levels[0] ?? []).entries()) {
    colours.append(
      node('span', '', { class: `swatch group${i % 4}`, 'aria-hidden': 'true' }),
      node('span', ` ${t.name}  `),
    );
  }
  $('map').replaceChildren(...(map ? [map, colours, node('p', legend, { class: 'note' })] : []));
  const category = release.facets.category;
  const mix = category.debiased ?? category.cells;
  const band = category.debiased ? null : category.validation?.band;
  $('categories').replaceChildren(
    barChart(
      cellsOf(largestFirst(mix), (c) => names[c.value] ?? c.value),
      'Category shares with 95% intervals, largest first',
    ),
    node('p', category.estimates ?? '', { class: 'note' }),
    ...(band
      ? [
          node(
            'p',
            `Classifier-error band (how far the true share was from this estimate in 95% of held-out mixes): ` +
              `${Object.entries(band)
                .map(([c, b]) => `${c} ±${percent(b)}`)
                .join(', ')}.`,
            { class: 'note' },
          ),
        ]
      : []),
  );
  const facets = [];
  for (const [name, facet] of Object.entries(release.facets)) {
    if (name === 'category') continue;
    const title = name.replaceAll('_', ' ');
    if (facet.cells.every((c) => c.suppressed)) {
      // Nothing to draw: one line that says why, the withheld values folded beneath.
      const folded = node('details');
      folded.append(
        node('summary', `${title}: nothing published yet (too few reports to publish any value reliably)`),
        barChart(cellsOf(facet.cells), `${name}: every value withheld`),
      );
      facets.push(folded);
      continue;
    }
    facets.push(node('h4', title), barChart(cellsOf(largestFirst(facet.cells)), `${name} shares with 95% intervals`));
  }
  $('facets').replaceChildren(...facets);
  languagesSection(release);
  discoverySection(release.discovery);
  plausibilitySection(release.plausibility);
  privacySection(release);
  await verifying;
  $('release').dataset.shown = id;
}

async function start() {
  const releases = await (await fetch('/api/v1/releases')).json();
  const list = $('releases');
  list.replaceChildren();
  if (!releases.length) list.append(node('li', 'No release yet.'));
  for (const r of releases) {
    const item = node('li');
    const link = node('a', `${r.id}`, { href: `?release=${encodeURIComponent(r.id)}` });
    item.append(link, document.createTextNode(` — study ${r.study_id}, ${r.created}`));
    list.append(item);
  }
  const chosen = new URLSearchParams(location.search).get('release') ?? releases[releases.length - 1]?.id;
  if (chosen) await show(chosen);
}

start().catch((error) => {
  $('error').textContent = error.message;
  $('error').hidden = false;
});
