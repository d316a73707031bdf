// The contributor's page: study and privacy statement → export file → analysis in a Web
// Worker → review table → the exact payload → donation through the IndexedDB outbox.
import { NOTICE, REPLY, REQUEST } from '/js/messages.js';
import { memo, outbox, post, send } from '/js/outbox.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let study = null;
let rows = [];
const excluded = new Set();
let pending = null;
// The device's memo (its reports, sample and ledger for every study) lives under one key.
const DEVICE = 'device';

// One worker per core, two at most: each reads the whole export and analyses its share of
// the conversations; the first gathers the analyses and builds the batch.
const progress = [];
function startWorker(n) {
  const worker = new Worker('/js/worker.js', { type: 'module' });
  const waiting = new Map();
  let nextId = 0;
  worker.onmessage = ({ data }) => {
    if (data.type === NOTICE.PROGRESS) {
      progress[n] = data;
      return showProgress();
    }
    if (data.type === NOTICE.DOWNLOAD) {
      if (n === 0) showDownload(data);
      return;
    }
    if (data.type === NOTICE.STATUS) {
      $('progress-text').textContent = data.text;
      return;
    }
    const { resolve, reject } = waiting.get(data.id);
    waiting.delete(data.id);
    data.type === REPLY.DONE ? resolve(data.result) : reject(new Error(data.message));
  };
  return (type, payload = {}) => {
    const id = nextId++;
    return new Promise((resolve, reject) => {
      waiting.set(id, { resolve, reject });
      worker.postMessage({ type, id, ...payload });
    });
  };
}
const workers = Array.from({ length: Math.min(2, navigator.hardwareConcurrency || 1) }, (_, n) => startWorker(n));
const call = (type, payload) => workers[0](type, payload);

// The one-time download of the model, as it arrives (the first worker's; the second reads the
// same bytes from the browser's cache or the network alongside).
function showDownload({ file, received, total }) {
  const mb = (bytes) => (bytes / 1e6).toFixed(1);
  $('download').textContent =
    `Downloading ${file}: ${mb(received)}${total ? ` of ${mb(total)}` : ''} MB (once; this browser keeps it).`;
}

function showError(message) {
  $('error').textContent = message;
  $('error').hidden = !message;
}

// A privacy parameter (ε, σ) as the statement shows it.
function twoDecimals(x) {
  return Number(x).toFixed(2);
}

// The statement is built as HTML from the study: every string from it is escaped.
const escapeHtml = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// What the server learns, in words for someone who has never heard of differential privacy;
// the parameters follow, folded away.
function plainStatement(plan) {
  const m = plan.reports_per_contributor;
  const epsilon = plan.accounting.contributor.epsilon;
  const drawn = m === 1 ? 'one of your conversations, drawn at random' : `${m} of your conversations, drawn at random`;
  const what = ['what kind of task it was'];
  if (plan.channels.some((c) => c.pool)) what.push('one more detail about it');
  if (plan.embedding) what.push('a blurred summary of its meaning');
  return (
    `<p class="lead">The study learns a <strong>blurred guess</strong> about ${drawn}: ${what.join(', ')}. ` +
    `Each answer is deliberately randomised on this device before it is sent, and no words of your ` +
    `conversations ever leave it. ${bound(epsilon)}</p>`
  );
}

// The contributor-level guarantee as a bound on how much surer anyone can become (e^ε).
function bound(epsilon) {
  if (epsilon > 7) {
    return 'This study randomises lightly: what is sent says a good deal about the conversations drawn.';
  }
  const surer = Math.max(2, Math.round(Math.exp(epsilon)));
  return (
    `Whatever anyone does with what is sent, they can never become more than about ` +
    `<strong>${surer}× surer</strong> of anything about you than they were without it.`
  );
}

function privacyStatement(plan) {
  return `${plainStatement(plan)}<details><summary>The exact guarantee</summary>${exactStatement(plan)}</details>`;
}

function exactStatement(plan) {
  const a = plan.accounting;
  const parts = [];
  const names = { krr: 'randomized response', olh: 'local hashing', oue: 'unary encoding' };
  const always = plan.channels
    .filter((c) => !c.pool)
    .map((c) => `${escapeHtml(c.channel)} (ε = ${twoDecimals(c.oracle.epsilon)}, ${names[c.oracle.kind]})`);
  const pools = {};
  for (const c of plan.channels.filter((c) => c.pool)) {
    pools[c.pool] ??= [];
    pools[c.pool].push(c);
  }
  parts.push(
    `<p>You send at most <strong>${plan.reports_per_contributor}</strong> ` +
      `report${plan.reports_per_contributor === 1 ? '' : 's'}, drawn from your conversations on this ` +
      `device. Altogether that spends at most <strong>ε = ${twoDecimals(a.contributor.epsilon)}</strong> (δ = ` +
      `${a.contributor.delta}) of ` +
      `differential privacy: whatever the server or anyone else does with it, your report changes what they ` +
      `can learn about you by at most a factor e<sup>ε</sup>.</p>`,
  );
  const items = [`<li>Every report carries ${always.join(', ')}.</li>`];
  for (const [pool, channels] of Object.entries(pools)) {
    items.push(
      `<li>One of ${channels.map((c) => escapeHtml(c.channel)).join(', ')} (the <em>${escapeHtml(pool)}</em> pool, ` +
        `drawn at random; ε = ${twoDecimals(Math.max(...channels.map((c) => c.oracle.epsilon)))}).</li>`,
    );
  }
  if (plan.embedding) {
    items.push(
      `<li>A summary of your request's meaning: ${plan.embedding.components.length} numbers, clipped and ` +
        `blurred with Gaussian noise (σ = ${twoDecimals(plan.embedding.sigma)}).</li>`,
    );
  }
  parts.push(
    `<ul>${items.join('')}</ul><p>Each value is randomised on this device before it is sent. No text, title or exact ` +
      `facet ever leaves it.</p>`,
  );
  const lifetime = plan.lifetime_epsilon_cap
    ? ` This device will never spend more than ε = ${twoDecimals(plan.lifetime_epsilon_cap)} on this study in all.`
    : '';
  parts.push(
    `<p>The guarantee covers this device in this study, across the study's versions: a value this device ` +
      `already sent ` +
      `is sent again rather than drawn anew, so a new version costs only what it changes; a second device (another ` +
      `browser, or cleared storage) is counted anew.${lifetime}</p>`,
  );
  return parts.join('');
}

// What the concern levels in the review mean (1 is no concern).
function concernLegend(scale) {
  const levels = [[1, 'no concern'], ...scale].map(([level, text]) => `${level}: ${text}`);
  return `Concern, as this device judged each request: ${levels.join(' ')}`;
}

function categoryName(id) {
  return study.categories.find((c) => c.id === id)?.name ?? id;
}

function topicName(path) {
  if (!path || !study.codebook) return '';
  const leaves = study.codebook.levels[study.codebook.levels.length - 1];
  return leaves.find((t) => t.id === path[path.length - 1])?.name ?? '';
}

// A cell of the review, labelled for the card layout of narrow screens.
function cell(text, label) {
  const td = document.createElement('td');
  td.textContent = text;
  if (label) td.dataset.label = label;
  return td;
}

// The title, and under it (on this device only) the day and the request's first words: titles
// are often "New chat".
function titleCell(row) {
  const td = cell('', 'Conversation');
  const title = document.createElement('strong');
  title.textContent = row.title;
  const preview = document.createElement('span');
  preview.className = 'preview';
  preview.textContent = [row.created, row.preview].filter(Boolean).join(' · ');
  td.append(title, preview);
  return td;
}

// A year of conversations is tens of thousands of rows: the table shows them a page at a time.
const PAGE = 500;
let limit = PAGE;
let view = { shown: 0, matching: 0 };

// How the review can be ordered: a key per row, largest first (the export's order by default).
const ORDERS = {
  export: (row) => -row.index,
  newest: (row) => (row.created ? Date.parse(row.created) : Number.NEGATIVE_INFINITY),
  oldest: (row) => (row.created ? -Date.parse(row.created) : Number.NEGATIVE_INFINITY),
  concern: (row) => row.concern,
  turns: (row) => row.turns,
};

// The rows the search and the category filter let through, in the chosen order.
function matchingRows() {
  const query = $('search').value.trim().toLowerCase();
  const category = $('category-filter').value;
  const key = ORDERS[$('sort').value] ?? ORDERS.export;
  return rows
    .filter((row) => (!query || row.search.includes(query)) && (!category || row.category === category))
    .sort((a, b) => key(b) - key(a) || a.index - b.index);
}

function renderRows() {
  const body = $('conversations').tBodies[0];
  body.replaceChildren();
  const matching = matchingRows();
  const shown = Math.min(limit, matching.length);
  for (const row of matching.slice(0, shown)) {
    const tr = document.createElement('tr');
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.checked = !excluded.has(row.id);
    box.setAttribute('aria-label', `Include “${row.title}”`);
    box.dataset.id = row.id;
    box.addEventListener('change', () => {
      box.checked ? excluded.delete(row.id) : excluded.add(row.id);
      $('payload-section').hidden = true;
      pending = null;
      countLine();
    });
    const include = document.createElement('td');
    include.append(box);
    tr.append(include, titleCell(row), cell(row.categoryName, 'Category'));
    if (study.codebook) tr.append(cell(row.topic, 'Topic'));
    tr.append(
      cell(row.language, 'Language'),
      cell(String(row.concern), 'Concern'),
      cell(String(row.turns), 'Turns'),
      cell(row.has_code ? 'yes' : 'no', 'Code'),
    );
    body.append(tr);
  }
  const hidden = matching.length - shown;
  $('more').hidden = hidden === 0;
  $('more').textContent = `Show ${Math.min(PAGE, hidden)} more (${hidden} not shown)`;
  view = { shown, matching: matching.length };
  countLine();
}

function countLine() {
  const { shown, matching } = view;
  const included = rows.length - excluded.size;
  const search = matching !== rows.length ? `, ${matching} match the search and filter` : '';
  $('select-all').textContent = matching !== rows.length ? `Include the ${matching} that match` : 'Include all';
  $('select-none').textContent = matching !== rows.length ? `Leave out the ${matching} that match` : 'Include none';
  const page = shown !== matching ? `, ${shown} shown` : '';
  $('review-count').textContent = `${rows.length} conversations, ${included} included${search}${page}.`;
  // Nothing can be sent without an included conversation: the button says why.
  $('prepare').disabled = included === 0;
  $('prepare').textContent = included === 0 ? 'Include at least one conversation to donate' : 'Show what will be sent';
}

let started = 0;
function showProgress() {
  const reports = progress.filter(Boolean);
  const done = reports.reduce((s, p) => s + p.done, 0);
  const share = reports.reduce((s, p) => s + (p.total ? p.read / p.total : 0), 0) / workers.length;
  $('progress').value = share;
  const elapsed = (performance.now() - started) / 1000;
  const left = share > 0.02 ? Math.max(0, (elapsed * (1 - share)) / share) : null;
  // The share follows the conversations as they are read, so the total and the time left are
  // extrapolated from it once a little of the file is done.
  const total = share > 0.02 ? ` of about ${Math.max(done, Math.round(done / share))}` : '';
  const time = left === null ? '' : `, about ${Math.ceil(left)} s left`;
  $('progress-text').textContent = `${done}${total} conversations analysed${time}`;
}

async function analyzeFile(file) {
  showError('');
  $('review').hidden = $('payload-section').hidden = true;
  $('progress-box').hidden = false;
  $('progress').value = 0;
  $('progress-text').textContent = `reading ${file.name}`;
  try {
    await ready;
    started = performance.now();
    progress.length = 0;
    const shards = workers.length;
    const results = await Promise.all(workers.map((w, shard) => w(REQUEST.ANALYZE, { file, shard, shards })));
    // The first worker builds the batch: it gets the others' analyses (they stay in this tab).
    for (const w of workers.slice(1)) await call(REQUEST.ADD, { json: await w(REQUEST.TAKE) });
    const result = {
      conversations: results.flatMap((r) => r.conversations).sort((a, b) => a.index - b.index),
      summary: results[0].summary,
    };
    if (result.conversations.length === 0) throw new Error('this export holds no conversations');
    rows = result.conversations.map((c) => {
      const title = c.title || '(untitled)';
      const row = { ...c, title, categoryName: categoryName(c.category), topic: topicName(c.topic_path) };
      row.search = [title, c.created, c.preview, row.categoryName, row.topic, c.language].join(' ').toLowerCase();
      return row;
    });
    excluded.clear();
    fillCategoryFilter();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $('progress-text').textContent =
      `${rows.length} conversations analysed in ${seconds} s by ${workers.length} ` +
      `worker${workers.length === 1 ? '' : 's'}` +
      (result.summary.skipped ? ` (${result.summary.skipped} unreadable records skipped)` : '');
    $('progress-text').dataset.seconds = seconds;
    $('progress-text').dataset.conversations = rows.length;
    limit = PAGE;
    $('progress').value = 1;
    $('review').hidden = false;
    renderRows();
  } catch (error) {
    $('progress-box').hidden = true;
    showError(`This file could not be read as an export: ${error.message}`);
  }
}

function guarantee(g) {
  return `ε = ${twoDecimals(g.epsilon)}${g.delta ? ` (δ = ${g.delta})` : ''}`;
}

// Where this device keeps a study's invitation code, and a redemption in progress for its version.
const invitationKey = () => `invitation:${study.id}`;
const redemptionKey = () => `redemption:${study.id}@${study.version}`;

// The code from an invitation link (`#invitation=CODE`): kept on this device, then taken out of
// the address so that it stays out of the history and of anything copied from the address bar.
async function keepInvitation() {
  const code = new URLSearchParams(location.hash.slice(1)).get('invitation');
  if (!code) return;
  await memo.put(invitationKey(), code.trim());
  history.replaceState(null, '', location.pathname + location.search);
}

async function showAccess() {
  const invited = study.access === 'invited';
  const code = invited && (await memo.get(invitationKey()));
  $('access').dataset.access = invited ? (code ? 'invited' : 'uninvited') : 'open';
  $('access').textContent = !invited
    ? 'Anyone may take part in this study, so its published figures are not protected against made-up reports.'
    : code
      ? 'This study takes invited contributors only, and this device holds your invitation. When you donate, ' +
        'it is exchanged for anonymous one-time tokens: the server can check that an invitation paid for each ' +
        'report, but not which invitation.'
      : 'This study takes invited contributors only. Open the link from your invitation on this device to ' +
        'donate; you can still look at what this page finds in your conversations.';
}

// The invitation exchanged for one token per report. The token requests are stored before they
// are sent and sent again, unchanged, after a lost answer or a closed tab: the server answers the
// same request again, while new requests would find the invitation spent.
async function redeemInvitation() {
  const code = await memo.get(invitationKey());
  if (!code) {
    throw new Error('This study takes invited contributors only: open the link from your invitation to donate.');
  }
  const id = encodeURIComponent(study.id);
  let pending = await memo.get(redemptionKey());
  if (!pending) {
    const response = await fetch(`/api/v1/studies/${id}/token-key`);
    if (!response.ok) throw new Error(`the study's token key could not be fetched (${response.status})`);
    pending = await call(REQUEST.TOKEN_REQUESTS, { key: await response.text() });
    await memo.put(redemptionKey(), pending);
  }
  const body = await call(REQUEST.REDEMPTION, { pending, invitation: code });
  $('redeem-status').textContent = 'Exchanging your invitation for anonymous tokens…';
  const answer = await post(`/api/v1/studies/${id}/tokens`, body, (text) => {
    $('redeem-status').textContent = `Exchanging your invitation: ${text}`;
  });
  if (!answer.ok) throw new Error(`your invitation was not accepted (${answer.status}): ${answer.text}`);
  $('redeem-status').textContent = '';
  return call(REQUEST.FINISH_TOKENS, { pending, answer: answer.text });
}

// How a channel's value was randomised, in words: the chance that what is sent is true.
function randomisation(oracle) {
  const e = Math.exp(oracle.epsilon);
  const pct = (x) => `${Math.round(100 * x)}%`;
  if (oracle.kind === 'krr') {
    return `kept with probability ${pct(e / (e + oracle.domain - 1))}, otherwise replaced by a random other value`;
  }
  if (oracle.kind === 'olh') {
    return (
      `hashed into one of ${oracle.buckets} buckets by a hash fixed per report; the bucket is kept with ` +
      `probability ${pct(e / (e + oracle.buckets - 1))}, otherwise replaced by another — a bucket stands for ` +
      `many values, never one`
    );
  }
  const other = pct(1 / (e + 1));
  return `one yes/no per value: the true one kept at 50%, every other set at random with probability ${other}`;
}

// What was sent for one channel, readable: a value's name, a bucket, or the set bits.
function sentValue(plan, value) {
  if (typeof value === 'number') return plan.labels[value] ?? String(value);
  if (Array.isArray(value)) return value.map((v) => plan.labels[v] ?? v).join(', ') || '(none)';
  return `bucket ${value.bucket} (hash seed ${value.seed})`;
}

// The batch as a table a person can read: per report and channel, what is sent and how it was
// randomised, so that a value that differs from the review is explained.
function payloadTable(batch) {
  const rows = [];
  batch.reports.forEach((report, i) => {
    for (const [channel, value] of Object.entries(report.channels)) {
      const plan = study.privacy.channels.find((c) => c.channel === channel);
      rows.push([i + 1, channel.replaceAll('_', ' '), sentValue(plan, value), randomisation(plan.oracle)]);
    }
    if (report.embedding) {
      rows.push([
        i + 1,
        'summary of meaning',
        `${report.embedding.length} numbers`,
        `each blurred with random noise (σ = ${twoDecimals(study.privacy.embedding.sigma)}), ` +
          'far larger than the signal',
      ]);
    }
  });
  const table = document.createElement('table');
  const head = table.createTHead().insertRow();
  const headers = ['report', 'what', 'sent', 'how it was randomised'];
  for (const h of headers) {
    const th = document.createElement('th');
    th.scope = 'col';
    th.textContent = h;
    head.append(th);
  }
  const body = table.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    r.forEach((c, i) => {
      const td = tr.insertCell();
      td.textContent = String(c);
      td.dataset.label = headers[i]; // named in the card layout of a narrow screen
    });
  }
  return table;
}

async function prepare() {
  showError('');
  const excludedIds = [...excluded];
  let result = await call(REQUEST.REPORT, { memo: await memo.get(DEVICE), excluded: excludedIds });
  if (result.needs_tokens) {
    const tokens = await redeemInvitation();
    result = await call(REQUEST.REPORT, { memo: await memo.get(DEVICE), excluded: excludedIds, tokens });
  }
  // The memo first: a retry after a refresh must re-send this very batch. It holds the batch's
  // tokens from now on, so the redemption they came from is done with.
  await memo.put(DEVICE, result.memo);
  await memo.delete(redemptionKey());
  // The batch is kept as the exact text the device built: that text is what is sent.
  pending = { text: result.batch, batch: JSON.parse(result.batch), memo: result.memo };
  $('payload').textContent = JSON.stringify(pending.batch, null, 2);
  $('payload-table').replaceChildren(payloadTable(pending.batch));
  const n = pending.batch.reports.length;
  const titles = result.sampled.map((id) => rows.find((r) => r.id === id)?.title ?? id);
  const cost = result.sent
    ? 'This batch was sent before: sending it again repeats the same reports and costs nothing more.'
    : `Sending ${n === 1 ? 'it' : 'them'} costs ${guarantee(result.cost)}; this device's total for this ` +
      `study becomes ${guarantee(result.lifetime_after)}` +
      (result.lifetime_cap ? ` (the study allows at most ε = ${twoDecimals(result.lifetime_cap)} per device).` : '.');
  $('payload-cost').textContent =
    `${n} report${n === 1 ? '' : 's'}, drawn at random from the conversations you included: ${titles.join('; ')}. ` +
    `${cost} Nothing else is sent.`;
  $('payload-section').dataset.sampled = JSON.stringify(result.sampled);
  $('payload-section').hidden = false;
  decided(null);
}

// After "Donate" or "Don't donate" neither button stays live; "Change my selection" goes back.
function decided(decision) {
  $('donate').disabled = $('decline').disabled = decision !== null;
  $('decision').hidden = decision !== 'declined';
}

function decline() {
  pending = null;
  decided('declined');
}

function reconsider() {
  $('payload-section').hidden = true;
  $('decision').hidden = true;
  $('review').scrollIntoView();
  $('prepare').focus();
}

// The category filter offers the categories this export has, most frequent first.
function fillCategoryFilter() {
  const counts = new Map();
  for (const row of rows) counts.set(row.category, (counts.get(row.category) ?? 0) + 1);
  const options = [...counts]
    .sort((a, b) => b[1] - a[1])
    .map(([id, n]) => new Option(`${categoryName(id)} (${n})`, id));
  $('category-filter').replaceChildren(new Option('All categories', ''), ...options);
}

// Include, or leave out, every conversation the search and filter let through (all of them
// when there is neither).
function includeAll(included) {
  for (const row of matchingRows()) included ? excluded.delete(row.id) : excluded.add(row.id);
  $('payload-section').hidden = true;
  pending = null;
  renderRows();
}

async function deliver(donation) {
  $('receipt-section').hidden = false;
  $('receipt').textContent = 'Sending…';
  $('receipt').dataset.state = 'sending';
  try {
    const receipt = await send(donation, (text) => ($('receipt').textContent = text));
    $('receipt').textContent =
      `Thank you. Receipt ${receipt.receipt} for ${receipt.reports} report${receipt.reports === 1 ? '' : 's'} to ` +
      `study ${receipt.study_id} on ` +
      `${receipt.day}${receipt.replayed ? ' (already received earlier; stored once)' : ''}. ` +
      'The receipt is a random code, not a place in a queue: it says nothing of who donated or how many did. ' +
      'What happens next: your blurred report joins the others, and the study publishes only figures that ' +
      'enough reports stand behind, in signed releases anyone can read on the Releases page.';
    $('receipt').dataset.state = 'stored';
    $('withdraw-key').textContent = donation.key;
    $('withdrawal-code').hidden = false;
  } catch (error) {
    $('receipt').textContent = error.message;
    $('receipt').dataset.state = 'refused';
  }
}

// Who runs the study, why, how long its reports are kept and how to withdraw, as a short list
// from the study itself (every string set as text, never as HTML).
function showSteward(steward) {
  const days = steward?.retention_days ?? 365;
  const facts = [
    ['Run by', steward?.operator || 'The study does not say who runs it.'],
    ...(steward?.contact ? [['Contact', steward.contact]] : []),
    ...(steward?.purpose ? [['Why', steward.purpose]] : []),
    ['Kept', `Each donation is kept ${days} days after it arrives, then deleted.`],
    [
      'Withdraw',
      'When you donate you get a withdrawal code: with it you can withdraw your donation at any time before ' +
        'then (at the bottom of this page). A release published before you withdraw keeps the figures it already ' +
        'counted: releases are signed and never change.',
    ],
  ];
  $('steward').replaceChildren(
    ...facts.flatMap(([term, text]) => {
      const dt = document.createElement('dt');
      const dd = document.createElement('dd');
      dt.textContent = term;
      dd.textContent = text;
      return [dt, dd];
    }),
  );
}

// Withdraws the donation a code names: the code is the batch's random key, which only this
// device and the server know.
async function withdraw(code) {
  const key = code.trim().toLowerCase();
  if (!key) return;
  if (!/^[0-9a-f]{32}$/.test(key)) {
    $('withdraw-result').textContent = 'A withdrawal code is 32 characters, digits and the letters a to f.';
    $('withdraw-result').dataset.state = 'refused';
    return;
  }
  $('withdraw-result').textContent = 'Withdrawing…';
  const url = `/api/v1/studies/${encodeURIComponent(study.id)}/withdrawals`;
  const answer = await post(url, JSON.stringify({ idempotency_key: key }), (text) => {
    $('withdraw-result').textContent = `Withdrawing: ${text}`;
  });
  if (!answer.ok) {
    $('withdraw-result').textContent =
      answer.status === 404
        ? 'No donation with this code is stored for this study (it may have passed its retention period).'
        : `The server could not withdraw it (${answer.status}): ${answer.text}`;
    $('withdraw-result').dataset.state = 'refused';
    return;
  }
  const result = JSON.parse(answer.text);
  $('withdraw-result').textContent = result.already_withdrawn
    ? `Donation ${result.receipt} was withdrawn before; nothing of it is stored.`
    : `Withdrawn: donation ${result.receipt} and its ${result.reports_deleted} ` +
      `report${result.reports_deleted === 1 ? '' : 's'} are deleted from the server.`;
  $('withdraw-result').dataset.state = 'withdrawn';
}

async function donate() {
  if (!pending) return;
  decided('donated');
  $('receipt').dataset.state = 'sending';
  // Recorded as sent before it is queued: the ledger holds what it costs even if the tab dies
  // here, and a later visit re-sends this very batch instead of drawing another.
  const committed = await call(REQUEST.COMMIT, { memo: pending.memo, key: pending.batch.idempotency_key });
  await memo.put(DEVICE, committed.memo);
  const donation = { key: pending.batch.idempotency_key, study: pending.batch.study_id, body: pending.text };
  await outbox.put(donation);
  await deliver(donation);
}

// Settled once every worker has loaded the model and the study: a file chosen before then
// waits for it (the promise exists from the start, so there is no moment without one).
let modelsLoaded;
const ready = new Promise((resolve, reject) => {
  modelsLoaded = { resolve, reject };
});
async function start() {
  const list = await (await fetch('/api/v1/studies')).json();
  const id = params.get('study') ?? list[0]?.id;
  const response = await fetch(`/api/v1/studies/${encodeURIComponent(id)}`);
  if (!response.ok) throw new Error(`no study ${id} on this server`);
  const text = await response.text();
  study = JSON.parse(text);
  $('study-title').textContent = study.title;
  $('study-description').textContent = study.description;
  showSteward(study.steward);
  document.title = `${study.title} — Chorus`;
  $('privacy').innerHTML = privacyStatement(study.privacy);
  await keepInvitation();
  await showAccess();
  if (!study.codebook) $('topic-column').remove();
  $('concern-legend').textContent = concernLegend(study.concern_scale ?? []);
  const m = study.privacy.reports_per_contributor;
  $('drawn').textContent =
    `When you donate, ${m === 1 ? 'one conversation' : `${m} conversations`} from those you include ` +
    `${m === 1 ? 'is' : 'are'} drawn at random and reported, blurred; you see which before anything is sent. ` +
    'The rest never leave this device.';
  Promise.all(workers.map((w) => w(REQUEST.LOAD, { study: text }))).then((loaded) => {
    $('download').textContent = loaded.every((l) => l.model === 'cache')
      ? 'Ready: the language model came from this browser, checked against its pinned fingerprint.'
      : 'Ready: the language model is downloaded and checked against its pinned fingerprint.';
    modelsLoaded.resolve();
  }, modelsLoaded.reject);
  // A donation a refresh or a lost connection interrupted: send it again (same key).
  for (const donation of await outbox.all()) {
    if (!donation.refused) deliver(donation);
  }
}

$('file').addEventListener('change', () => $('file').files[0] && analyzeFile($('file').files[0]));
$('drop').addEventListener('dragover', (e) => e.preventDefault());
$('drop').addEventListener('drop', (e) => {
  e.preventDefault();
  const file = e.dataTransfer.files[0];
  if (file) analyzeFile(file);
});
for (const [id, event] of [
  ['search', 'input'],
  ['category-filter', 'change'],
  ['sort', 'change'],
]) {
  $(id).addEventListener(event, () => {
    limit = PAGE;
    renderRows();
  });
}
$('more').addEventListener('click', () => {
  limit += PAGE;
  renderRows();
});
$('select-all').addEventListener('click', () => includeAll(true));
$('select-none').addEventListener('click', () => includeAll(false));
$('prepare').addEventListener('click', () => prepare().catch((e) => showError(e.message)));
$('donate').addEventListener('click', () => donate().catch((e) => showError(e.message)));
$('decline').addEventListener('click', decline);
$('withdraw').addEventListener('click', () => withdraw($('withdraw-input').value).catch((e) => showError(e.message)));
$('withdraw-now').addEventListener('click', () => {
  $('withdraw-input').value = $('withdraw-key').textContent;
  $('withdraw-input').closest('details').open = true;
  withdraw($('withdraw-key').textContent).catch((e) => showError(e.message));
});
$('reconsider').addEventListener('click', reconsider);
ready.catch(() => {}); // reported by start's own failure below
start().catch((e) => {
  modelsLoaded.reject(e);
  showError(`The study could not be loaded: ${e.message}`);
});
