// Cortex status page. Plain JavaScript, no framework, no network access beyond this
// coordinator. Data arrives over one EventSource (/ui/events): a `snapshot`, then `diff`s that
// apply on top of it (seq/base). Text is always set with textContent, never parsed as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
const SVG = 'http://www.w3.org/2000/svg';

const S = {
  seq: -1,
  cluster: null,
  nodes: new Map(),      // id -> node view
  live: new Map(),       // id -> {at (local ms of the heartbeat), cpu, mem, load}
  tasks: { recent: [], active: 0 },
  events: [],            // oldest first
  series: [],            // [t, cpu, mem, n]
  session: null,         // {token_id, scope, csrf}
  serverSkew: 0,         // server clock - local clock (ms)
  dirty: new Set(),
  rows: new Map(),       // id -> <tr>, for the rows on screen
  visibleIds: [],        // the ids of those rows, in order
  limit: 100,            // how many rows the nodes table shows
  logTask: null,
  logOffset: 0,
  logTimer: null,
  busy: new Set(),       // node ids with a request in flight
};

// ---------- small helpers ----------

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  if (props) {
    for (const [k, v] of Object.entries(props)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') e.className = v;
      else if (k === 'text') e.textContent = v;
      else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? '' : String(v));
    }
  }
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

function svg(tag, attrs, ...children) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  for (const c of children) {
    if (typeof c === 'string') e.textContent = c; else if (c) e.append(c);
  }
  return e;
}

function badge(text, cls) {
  return el('span', { class: 'badge ' + (cls || text) }, text);
}

function gib(bytes) {
  if (!bytes) return '—';
  const g = bytes / 2 ** 30;
  return (g >= 10 ? g.toFixed(0) : g.toFixed(1)) + ' GiB';
}

function fmt(v, digits = 1) {
  return v === null || v === undefined || v === 0 ? '—' : Number(v).toFixed(digits);
}

function ago(ms) {
  if (ms < 0) ms = 0;
  const s = ms / 1000;
  if (s < 10) return s.toFixed(1) + ' s';
  if (s < 90) return Math.round(s) + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  if (s < 172800) return Math.round(s / 3600) + ' h';
  return Math.round(s / 86400) + ' d';
}

function serverNow() {
  return Date.now() + S.serverSkew;
}

const pad2 = (v) => (v < 10 ? '0' : '') + v;
function clock(ms) {
  // Local HH:MM:SS by hand: toLocaleTimeString costs ~0.2 ms a call, hundreds per render.
  const d = new Date(ms - S.serverSkew);
  return pad2(d.getHours()) + ':' + pad2(d.getMinutes()) + ':' + pad2(d.getSeconds());
}

let toastTimer = null;
function toast(text, bad) {
  const t = $('toast');
  t.textContent = text;
  t.className = 'toast show' + (bad ? ' bad' : '');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { t.className = 'toast'; }, bad ? 6000 : 3000);
}

function canOperate() {
  return S.session && (S.session.scope === 'operate' || S.session.scope === 'admin');
}

// ---------- the live feed ----------

let source = null;

function connect() {
  if (source) source.close();
  setConn('connecting…', '');
  source = new EventSource('/ui/events');
  source.addEventListener('open', () => setConn('live', 'live'));
  source.addEventListener('error', () => setConn('reconnecting…', 'down'));
  source.addEventListener('snapshot', (e) => applySnapshot(JSON.parse(e.data)));
  source.addEventListener('diff', (e) => applyDiff(JSON.parse(e.data)));
}

function setConn(text, cls) {
  const c = $('conn');
  c.textContent = text;
  c.className = 'conn ' + cls;
}

function setLive(id, v, receivedAt) {
  S.live.set(id, { at: receivedAt - v[0], cpu: v[1], mem: v[2], load: v[3] });
}

function applySnapshot(d) {
  const now = Date.now();
  S.seq = d.seq;
  S.serverSkew = d.server_ms - now;
  S.cluster = d.cluster;
  S.nodes = new Map(d.nodes.map((n) => [n.id, n]));
  S.live = new Map();
  for (const [id, v] of Object.entries(d.live || {})) setLive(id, v, now);
  S.tasks = d.tasks || { recent: [], active: 0 };
  S.events = d.events || [];
  S.series = d.series || [];
  for (const tr of S.rows.values()) tr.remove();
  S.rows.clear();
  S.visibleIds = [];
  markDirty('cluster', 'nodes', 'order', 'tasks', 'events', 'series');
  window.__cortexSnapshotAt = performance.now();
}

function applyDiff(d) {
  if (d.base !== S.seq) {
    // Out of step (should not happen: the server re-sends a snapshot). Start over.
    connect();
    return;
  }
  const now = Date.now();
  S.seq = d.seq;
  S.serverSkew = d.server_ms - now;
  if (d.cluster) { S.cluster = d.cluster; markDirty('cluster', 'coords'); }
  if (d.nodes) {
    for (const n of d.nodes) {
      const old = S.nodes.get(n.id);
      if (!old || old.name !== n.name || old.role !== n.role) markDirty('order');
      S.nodes.set(n.id, n);
      markRow(n.id);
    }
    markDirty('nodes');
  }
  if (d.removed) {
    for (const id of d.removed) {
      S.nodes.delete(id);
      S.live.delete(id);
      const tr = S.rows.get(id);
      if (tr) tr.remove();
      S.rows.delete(id);
    }
    markDirty('nodes');
  }
  if (d.live) {
    for (const [id, v] of Object.entries(d.live)) { setLive(id, v, now); liveRows.add(id); }
    markDirty('live');
  }
  if (d.tasks) { S.tasks = d.tasks; markDirty('tasks'); }
  if (d.events) {
    S.events.push(...d.events);
    if (S.events.length > 200) S.events.splice(0, S.events.length - 200);
    markDirty('events');
  }
  if (d.series) {
    S.series.push(d.series);
    if (S.series.length > 120) S.series.shift();
    markDirty('series');
  }
}

const dirtyRows = new Set();   // node record changed: rebuild the row
const liveRows = new Set();    // only heartbeat figures changed: update three cells
function markRow(id) { dirtyRows.add(id); schedule(); }
function markDirty(...what) { for (const w of what) S.dirty.add(w); schedule(); }

let scheduled = false;
function schedule() {
  if (scheduled) return;
  scheduled = true;
  requestAnimationFrame(render);
}

// ---------- rendering ----------

function render() {
  scheduled = false;
  const d = S.dirty;
  S.dirty = new Set();
  // What each part of the last render cost (ms), for scripts/bench-page.py.
  const cost = {};
  const timed = (name, f) => { const t = performance.now(); f(); cost[name] = performance.now() - t; };
  if (d.has('cluster')) timed('cluster', renderCluster);
  if (d.has('cluster') || d.has('nodes')) timed('pending', () => { renderPending(); renderCoords(); });
  if (d.has('nodes') || d.has('order') || dirtyRows.size) timed('nodes', renderNodes);
  else if (d.has('live')) timed('live', renderLive);
  if (d.has('nodes')) timed('bench', renderBench);
  if (d.has('series') || d.has('cluster')) timed('load', renderLoad);
  if (d.has('tasks')) timed('tasks', renderTasks);
  if (d.has('events')) timed('events', renderEvents);
  window.__cortexRenderCost = cost;
  window.__cortexRenderedSeq = S.seq;
  window.__cortexRenderedAt = performance.now();
}

function renderCluster() {
  const c = S.cluster;
  const h = $('health');
  if (!c) { h.textContent = 'no data'; h.className = 'health unknown'; return; }
  const label = { healthy: 'Healthy', degraded: 'Degraded', unavailable: 'No leader' }[c.health] || c.health;
  h.textContent = label;
  h.className = 'health ' + c.health;
  const leader = c.leader_id !== null && c.leader_id !== undefined ? S.nodes.get(String(c.leader_id)) : null;
  const facts = [
    ['Leader', leader ? leader.name + ' (' + c.leader_id + ')' : (c.leader_id ?? 'none — election in progress')],
    ['Term', c.term],
    ['Commit index', c.commit_index ?? '—'],
    ['Applied index', c.applied_index ?? '—'],
    ['This coordinator', c.node_name + ' — ' + c.raft_role],
    ['Nodes', Object.entries(c.nodes_by_state).map(([k, v]) => v + ' ' + k).join(', ') || 'none'],
    ['Cluster id', c.cluster_id || '—'],
    ['Version', c.version],
  ];
  const dl = $('facts');
  dl.replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
  $('health-reasons').replaceChildren(...c.health_reasons.map((r) => el('li', { text: r })));
}

function nodeFacts(n) {
  const parts = [n.cpus + ' CPUs', gib(n.mem_bytes), n.arch || '?'];
  if (n.gpus.length) parts.push(n.gpus.length + ' GPU');
  return parts.join(' · ');
}

function renderPending() {
  const pending = [...S.nodes.values()].filter((n) => n.state === 'pending')
    .sort((a, b) => a.registered_at_ms - b.registered_at_ms);
  $('pending-count').textContent = pending.length ? '(' + pending.length + ')' : '';
  const box = $('pending');
  if (!pending.length) {
    box.replaceChildren(el('p', { class: 'empty' },
      'No machine is waiting. A machine that joins with a token shows up here; check the code on its console, then approve it.'));
    return;
  }
  box.replaceChildren(...pending.map((n) => {
    const busy = S.busy.has(n.id);
    const title = canOperate() ? null : 'log in with an operate token to approve';
    return el('div', { class: 'pending-item', 'data-node': n.name, 'data-id': n.id },
      el('div', null, el('strong', { text: n.name }), ' ', el('span', { class: 'muted', text: '#' + n.id })),
      el('div', null, 'Code ', el('span', { class: 'code', text: n.code || '—' }),
        ' · asked ', ago(serverNow() - n.registered_at_ms), ' ago'),
      el('div', { class: 'muted', text: nodeFacts(n) + (n.os ? ' · ' + n.os : '') }),
      el('div', { class: 'buttons' },
        el('button', { type: 'button', class: 'approve', disabled: busy, title,
          'aria-label': 'Approve ' + n.name, onclick: () => nodeAction(n, 'approve') }, 'Approve'),
        el('button', { type: 'button', class: 'danger reject', disabled: busy, title,
          'aria-label': 'Reject ' + n.name, onclick: () => nodeAction(n, 'reject') }, 'Reject')));
  }));
}

function renderCoords() {
  const c = S.cluster;
  const coords = [...S.nodes.values()].filter((n) => n.role === 'coordinator')
    .sort((a, b) => a.name.localeCompare(b.name));
  const ul = $('coords');
  if (!coords.length) { ul.replaceChildren(el('li', { class: 'empty', text: 'No coordinator record yet.' })); return; }
  ul.replaceChildren(...coords.map((n) => el('li', null,
    el('strong', { text: n.name }), badge(n.state),
    n.leader ? badge('leader') : (n.voter ? badge('voter', 'info') : badge('learner')),
    c && String(c.node_id) === n.id ? el('span', { class: 'muted', text: '(this page)' }) : null,
    n.http_addr && !(c && String(c.node_id) === n.id)
      ? el('a', { href: 'http://' + n.http_addr + '/', text: n.http_addr }) : null)));
}

function matches(n, f) {
  if (!f) return true;
  const hay = [n.name, n.state, n.role, n.id, n.arch, ...Object.entries(n.labels).map(([k, v]) => k + '=' + v)]
    .join(' ').toLowerCase();
  return f.split(/\s+/).every((w) => hay.includes(w));
}

function nodeOrder(a, b) {
  if (a.role !== b.role) return a.role === 'coordinator' ? -1 : 1;
  return collator.compare(a.name, b.name) || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

function liveCells(id) {
  const l = S.live.get(id);
  if (!l) return ['—', '—', '—'];
  return [ago(Date.now() - l.at), fmt(l.cpu, 0), fmt(l.mem, 0)];
}

function buildRow(n) {
  const [hb, cpu, mem] = liveCells(n.id);
  const b = n.bench || {};
  const tr = el('tr', { 'data-node': n.name, 'data-id': n.id },
    el('th', { scope: 'row' }, n.name),
    el('td', { class: 'state' }, badge(n.state), n.drained && n.state !== 'draining' ? ' (drained)' : ''),
    el('td', { text: n.role + (n.leader ? ' (leader)' : '') }),
    el('td', { class: 'num', text: n.cpus || '—' }),
    el('td', { class: 'num', text: gib(n.mem_bytes) }),
    el('td', { text: n.gpus.length ? n.gpus.length + ' × ' + n.gpus[0] : '—' }),
    el('td', { class: 'num', text: fmt(b.f64_all) }),
    el('td', { class: 'num', text: fmt(b.triad) }),
    el('td', { class: 'num hb', text: hb }),
    el('td', { class: 'num cpu', text: cpu }),
    el('td', { class: 'num mem', text: mem }),
    el('td', { class: 'num', text: n.running || '0' }),
    el('td', null, el('button', { type: 'button', class: 'secondary small', 'aria-label': 'Details of ' + n.name,
      onclick: () => openNode(n.id) }, 'Details')));
  return tr;
}

// The nodes table shows PAGE rows at first (filtered, sorted), more on request: a thousand
// table rows cost the browser half a second of layout on every change.
const PAGE = 100;
const collator = new Intl.Collator(undefined, { numeric: true });

function renderNodes() {
  const tbody = $('nodes');
  const f = $('node-filter').value.trim().toLowerCase();
  for (const id of dirtyRows) {
    const old = S.rows.get(id);
    const n = S.nodes.get(id);
    if (old && n) {
      const tr = buildRow(n);
      old.replaceWith(tr);
      S.rows.set(id, tr);
    }
  }
  dirtyRows.clear();
  const list = [...S.nodes.values()].filter((n) => matches(n, f)).sort(nodeOrder);
  const visible = list.slice(0, S.limit);
  const ids = visible.map((n) => n.id);
  const cur = S.visibleIds;
  if (ids.length !== cur.length || ids.some((id, i) => id !== cur[i])) {
    const keep = new Set(ids);
    for (const id of [...S.rows.keys()]) if (!keep.has(id)) S.rows.delete(id);
    tbody.replaceChildren(...visible.map((n) => {
      if (!S.rows.has(n.id)) S.rows.set(n.id, buildRow(n));
      return S.rows.get(n.id);
    }));
    S.visibleIds = ids;
  }
  renderLive();
  const total = S.nodes.size;
  const workers = [...S.nodes.values()].filter((n) => n.role === 'worker').length;
  let count = '';
  if (total) {
    count = list.length === total ? String(total) : list.length + ' of ' + total + ' match';
    if (visible.length < list.length) count += ', first ' + visible.length + ' shown';
    count = '(' + count + ')';
  }
  $('nodes-count').textContent = count;
  const more = $('nodes-more');
  more.hidden = visible.length >= list.length;
  more.textContent = `Show ${Math.min(PAGE, list.length - visible.length)} more (${list.length - visible.length} not shown)`;
  const empty = $('nodes-empty');
  if (!workers) {
    empty.hidden = false;
    empty.textContent = 'No worker nodes yet — on another Linux machine run `cortex agent --token <T>` with a join token from `cortex token create`, or network-boot machines from this coordinator (`cortex pxe serve`). They appear under “Waiting for approval”.';
  } else if (!list.length) {
    empty.hidden = false;
    empty.textContent = 'No node matches the filter.';
  } else {
    empty.hidden = true;
  }
}

function renderLive() {
  for (const id of liveRows) {
    const tr = S.rows.get(id);
    if (!tr) continue;
    const [hb, cpu, mem] = liveCells(id);
    tr.querySelector('.hb').textContent = hb;
    tr.querySelector('.cpu').textContent = cpu;
    tr.querySelector('.mem').textContent = mem;
  }
  liveRows.clear();
}

function refreshAges() {
  const now = Date.now();
  for (const [id, tr] of S.rows) {
    const l = S.live.get(id);
    if (!l) continue;
    const cell = tr.querySelector('.hb');
    const age = now - l.at;
    cell.textContent = ago(age);
    cell.classList.toggle('stale', age > 5000);
  }
}

// ---------- plots (inline SVG) ----------

function renderBench() {
  const metric = $('bench-metric').value;
  const label = $('bench-metric').selectedOptions[0].textContent;
  const rows = [...S.nodes.values()].filter((n) => n.bench && n.bench[metric] > 0)
    .map((n) => ({ name: n.name, v: n.bench[metric] })).sort((a, b) => b.v - a.v);
  const box = $('bench-plot');
  if (!rows.length) {
    box.replaceChildren(el('p', { class: 'empty',
      text: 'No benchmark figures yet — every node measures itself when it starts (bench.on_start) or with `cortex bench`.' }));
    return;
  }
  const top = rows.slice(0, 20);
  const W = 560, rowH = 20, left = 130, right = 60, H = top.length * rowH + 24;
  const max = top[0].v;
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label + ', highest first' });
  g.append(svg('title', {}, label + (rows.length > top.length ? ` (top ${top.length} of ${rows.length})` : '')));
  top.forEach((r, i) => {
    const y = i * rowH + 4;
    const w = Math.max(1, (W - left - right) * r.v / max);
    g.append(svg('text', { x: left - 6, y: y + 13, 'text-anchor': 'end' }, r.name.length > 18 ? r.name.slice(0, 17) + '…' : r.name));
    g.append(svg('rect', { class: 'bar', x: left, y, width: w, height: rowH - 6, rx: 2 }, svg('title', {}, `${r.name}: ${r.v}`)));
    g.append(svg('text', { x: left + w + 4, y: y + 13 }, String(r.v)));
  });
  if (rows.length > top.length) {
    g.append(svg('text', { x: left, y: H - 4 }, `top ${top.length} of ${rows.length} nodes`));
  }
  box.replaceChildren(g);
}

function lineChart(points, caption) {
  // points: [[t, cpu, mem], ...] with t in server ms.
  const W = 560, H = 200, L = 36, R = 10, T = 10, B = 24;
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': caption });
  g.append(svg('title', {}, caption));
  const t1 = serverNow(), t0 = t1 - 10 * 60 * 1000;
  const x = (t) => L + (W - L - R) * Math.max(0, (t - t0) / (t1 - t0));
  const y = (v) => T + (H - T - B) * (1 - Math.min(100, Math.max(0, v)) / 100);
  for (const v of [0, 25, 50, 75, 100]) {
    g.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
    g.append(svg('text', { x: L - 4, y: y(v) + 4, 'text-anchor': 'end' }, v + '%'));
  }
  for (const m of [10, 5, 0]) {
    g.append(svg('text', { x: x(t1 - m * 60000), y: H - 6, 'text-anchor': m === 0 ? 'end' : (m === 10 ? 'start' : 'middle') },
      m ? '−' + m + ' min' : 'now'));
  }
  const pts = points.filter((p) => p[0] >= t0);
  const line = (i) => pts.map((p) => `${x(p[0]).toFixed(1)},${y(p[i]).toFixed(1)}`).join(' ');
  if (pts.length) {
    g.append(svg('polyline', { class: 'cpu', points: line(1) }));
    g.append(svg('polyline', { class: 'mem', points: line(2) }));
  }
  const last = pts[pts.length - 1];
  const legend = el('div', { class: 'legend' },
    el('span', { class: 'cpu-key', text: 'CPU' + (last ? ' ' + last[1] + '%' : '') }),
    el('span', { class: 'mem-key', text: 'memory' + (last ? ' ' + last[2] + '%' : '') }));
  return [g, legend];
}

function renderLoad() {
  const box = $('load-plot');
  if (!S.series.length) {
    const c = S.cluster;
    let why = 'No heartbeat figures yet — they arrive every second from each node and are sampled every 5 s.';
    if (c && c.raft_role !== 'leader' && c.leader_id !== null) {
      const l = S.nodes.get(String(c.leader_id));
      why = 'Nodes send heartbeats to the leader, so this follower has none. Open the leader’s page' +
        (l && l.http_addr ? ': http://' + l.http_addr + '/' : '.');
    }
    box.replaceChildren(el('p', { class: 'empty', text: why }));
    return;
  }
  box.replaceChildren(...lineChart(S.series, 'Mean CPU and memory in use over the last 10 minutes'));
}

// ---------- tasks and logs ----------

function renderTasks() {
  const t = S.tasks;
  $('tasks-count').textContent = t.recent.length ? `(${t.active} active, ${t.recent.length} most recent shown)` : '';
  const body = $('tasks');
  const empty = $('tasks-empty');
  if (!t.recent.length) {
    body.replaceChildren();
    empty.hidden = false;
    empty.textContent = 'No tasks yet — run one with `cortex run -- uname -a`, or ask Claude Code through MCP.';
    return;
  }
  empty.hidden = true;
  body.replaceChildren(...t.recent.map((task) => el('tr', { 'data-task': task.id },
    el('th', { scope: 'row' }, el('code', { text: task.id.slice(0, 8) }), ' ', task.name),
    el('td', null, badge(task.state)),
    el('td', { text: task.node || '—' }),
    el('td', { class: 'num', text: task.attempt }),
    el('td', { class: 'num', text: task.exit_code ?? '—' }),
    el('td', { text: ago(serverNow() - task.created_at_ms) + ' ago', title: task.error || '' }),
    el('td', { class: 'buttons' },
      el('button', { type: 'button', class: 'secondary small', 'aria-label': 'Log of ' + task.name,
        onclick: () => openLog(task) }, 'Log'),
      task.active ? el('button', { type: 'button', class: 'danger small', 'aria-label': 'Cancel ' + task.name,
        onclick: () => cancelTask(task) }, 'Cancel') : null))));
}

function openLog(task) {
  closeLog();
  S.logTask = task.id;
  S.logOffset = 0;
  $('log').replaceChildren();
  $('log-title').textContent = 'Log of ' + task.name;
  $('log-panel').hidden = false;
  pollLog();
  $('log').focus();
}

function closeLog() {
  clearTimeout(S.logTimer);
  S.logTask = null;
  $('log-panel').hidden = true;
}

async function pollLog() {
  const id = S.logTask;
  if (!id) return;
  try {
    const r = await fetch(`/ui/tasks/${encodeURIComponent(id)}/logs?offset=${S.logOffset}`);
    const d = await r.json();
    if (S.logTask !== id) return;
    if (!r.ok) { $('log-state').textContent = d.error ? d.error.message : 'error'; return; }
    const pre = $('log');
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    for (const c of d.chunks) pre.append(el('span', { class: c.stream, text: c.text }));
    S.logOffset = d.next_offset;
    $('log-state').textContent = d.task.state + (d.done ? ' — finished' : ' — following');
    if (atEnd) pre.scrollTop = pre.scrollHeight;
    if (!d.done) S.logTimer = setTimeout(pollLog, d.chunks.length ? 200 : 1000);
  } catch (e) {
    if (S.logTask === id) S.logTimer = setTimeout(pollLog, 2000);
  }
}

// ---------- events ----------

function eventClass(kind) {
  if (/down|lost|fail|reject|suspect/.test(kind)) return 'bad';
  if (kind.startsWith('node')) return 'node';
  if (kind.startsWith('task') || kind.startsWith('workflow')) return 'task';
  return 'other';
}

function renderEvents() {
  const ol = $('events');
  const evs = S.events.slice().reverse();
  if (!evs.length) {
    ol.replaceChildren(el('li', { class: 'empty', text: 'Nothing has happened yet.' }));
    $('event-strip').replaceChildren();
    return;
  }
  ol.replaceChildren(...evs.slice(0, 100).map((e) => el('li', null,
    el('time', { datetime: new Date(e.at_ms).toISOString(), text: clock(e.at_ms) }),
    el('span', { class: 'kind', text: e.kind }),
    el('span', { text: e.message }))));
  // The last hour as ticks on a line (stretched to the width; labels are HTML).
  const W = 1000, H = 24, t1 = serverNow(), t0 = t1 - 3600 * 1000;
  const g = svg('svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img',
    'aria-label': 'events in the last hour' });
  g.append(svg('line', { class: 'grid', x1: 0, x2: W, y1: H / 2, y2: H / 2 }));
  for (const e of S.events) {
    if (e.at_ms < t0) continue;
    const x = (W - 4) * (e.at_ms - t0) / (t1 - t0) + 2;
    g.append(svg('line', { class: 'tick ' + eventClass(e.kind), x1: x, x2: x, y1: 2, y2: H - 2 },
      svg('title', {}, clock(e.at_ms) + ' ' + e.message)));
  }
  $('event-strip').replaceChildren(g, el('div', { class: 'strip-axis' },
    el('span', { text: '−60 min' }), el('span', { text: 'now' })));
}

// ---------- node details ----------

async function openNode(id) {
  const n = S.nodes.get(id);
  if (!n) return;
  const b = n.bench || {};
  $('node-title').textContent = n.name + ' (' + n.id + ')';
  const facts = [
    ['State', n.state + (n.drained && n.state !== 'draining' ? ' (drained)' : '') + (n.reject_reason ? ' — ' + n.reject_reason : '')],
    ['Role', n.role + (n.voter ? ', Raft voter' : '') + (n.leader ? ', leader' : '')],
    ['CPU', `${n.cpu_model || '?'} — ${n.cores ?? '?'} cores, ${n.cpus} threads`],
    ['Memory', gib(n.mem_bytes)],
    ['GPUs', n.gpus.length ? n.gpus.join(', ') : 'none'],
    ['OS', `${n.os || '?'} · ${n.kernel || '?'} · ${n.arch || '?'}`],
    ['Address', n.http_addr || '—'],
    ['Labels', Object.entries(n.labels).map(([k, v]) => k + '=' + v).join(', ') || 'none'],
    ['GFLOP/s f64 (all / one core)', n.bench ? `${fmt(b.f64_all)} / ${fmt(b.f64_one)}` : 'not measured'],
    ['GFLOP/s f32 (all cores)', n.bench ? fmt(b.f32_all) : 'not measured'],
    ['STREAM triad GB/s', n.bench ? fmt(b.triad) : 'not measured'],
    ['Disk read MB/s', n.bench ? fmt(b.disk_read) : 'not measured'],
    ['Running tasks', n.running],
  ];
  $('node-facts').replaceChildren(...facts.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: String(v) })]));
  const actions = $('node-actions');
  actions.replaceChildren();
  if (n.drained) {
    actions.append(el('button', { type: 'button', onclick: () => nodeAction(n, 'undrain') }, 'Undrain (take new work again)'));
  } else if (n.state === 'ready' || n.state === 'suspect' || n.state === 'down') {
    actions.append(el('button', { type: 'button', class: 'danger', onclick: () => nodeAction(n, 'drain') }, 'Drain (no new work)'));
  }
  $('node-plot').replaceChildren(el('p', { class: 'muted', text: 'loading…' }));
  const dlg = $('node-dialog');
  if (!dlg.open) dlg.showModal();
  try {
    const r = await fetch('/ui/nodes/' + encodeURIComponent(id) + '/history');
    const d = await r.json();
    if (!r.ok) throw new Error(d.error ? d.error.message : r.status);
    $('node-plot').replaceChildren(...(d.points.length
      ? lineChart(d.points, `CPU and memory in use on ${n.name}, last 10 minutes`)
      : [el('p', { class: 'empty', text: 'No heartbeat figures from this node on this coordinator yet.' })]));
  } catch (e) {
    $('node-plot').replaceChildren(el('p', { class: 'error', text: 'could not load the history: ' + e.message }));
  }
}

// ---------- login and actions ----------

async function loadSession() {
  try {
    const r = await fetch('/ui/session', { cache: 'no-store' });
    const d = await r.json();
    S.session = d.logged_in ? d : null;
  } catch (e) {
    S.session = null;
  }
  renderAuth();
}

function renderAuth() {
  const s = S.session;
  $('who').textContent = s ? `token ${s.token_id} (${s.scope})` : 'read-only — log in to approve';
  $('login-btn').hidden = !!s;
  $('logout-btn').hidden = !s;
  markDirty('nodes');
}

function openLogin(message) {
  $('login-error').textContent = message || '';
  $('token').value = '';
  $('login-dialog').showModal();
  $('token').focus();
}

async function login(ev) {
  ev.preventDefault();
  const token = $('token').value.trim();
  // The message that opened the dialog (or the last failure) goes: what shows next is this
  // attempt's answer, never a stale one.
  $('login-error').textContent = '';
  try {
    const r = await fetch('/ui/login', {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ token }),
    });
    const d = await r.json();
    if (!r.ok) { $('login-error').textContent = d.error ? d.error.message : 'login failed (' + r.status + ')'; return; }
    S.session = d;
    $('login-dialog').close();
    renderAuth();
    toast('Logged in as token ' + d.token_id + ' (' + d.scope + ')');
  } catch (e) {
    $('login-error').textContent = 'could not reach this coordinator: ' + e.message;
  }
}

async function logout() {
  await fetch('/ui/logout', { method: 'POST' }).catch(() => {});
  S.session = null;
  renderAuth();
}

async function post(url, body) {
  const r = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-cortex-csrf': S.session ? S.session.csrf : '' },
    body: JSON.stringify(body || {}),
  });
  let d = {};
  try { d = await r.json(); } catch (e) { /* empty body */ }
  if (r.status === 401) { S.session = null; renderAuth(); }
  if (!r.ok) throw Object.assign(new Error(d.error ? d.error.message : 'HTTP ' + r.status), { status: r.status });
  return d;
}

async function nodeAction(n, action) {
  if (!S.session) { openLogin('Log in to ' + action + ' ' + n.name + '.'); return; }
  let body = {};
  if (action === 'reject') {
    const reason = prompt('Reject ' + n.name + '? Optional reason:', '');
    if (reason === null) return;
    body = { reason };
  }
  if (action === 'drain' && !confirm('Drain ' + n.name + '? It will get no new work.')) return;
  S.busy.add(n.id);
  markDirty('nodes');
  try {
    await post('/ui/nodes/' + encodeURIComponent(n.id) + '/' + action, body);
    toast({ approve: 'Approved ', reject: 'Rejected ', drain: 'Draining ', undrain: 'Undrained ' }[action] + n.name);
    if (action === 'drain' || action === 'undrain') $('node-dialog').close();
  } catch (e) {
    if (e.status === 401) openLogin(e.message); else toast(e.message, true);
  } finally {
    S.busy.delete(n.id);
    markDirty('nodes');
  }
}

async function cancelTask(task) {
  if (!S.session) { openLogin('Log in to cancel tasks.'); return; }
  if (!confirm('Cancel task ' + task.name + '?')) return;
  try {
    await post('/ui/tasks/' + encodeURIComponent(task.id) + '/cancel');
    toast('Cancelled ' + task.name);
  } catch (e) {
    if (e.status === 401) openLogin(e.message); else toast(e.message, true);
  }
}

// ---------- start ----------

document.addEventListener('DOMContentLoaded', () => {
  $('login-btn').addEventListener('click', () => openLogin());
  $('logout-btn').addEventListener('click', logout);
  $('login-form').addEventListener('submit', login);
  $('login-cancel').addEventListener('click', () => $('login-dialog').close());
  $('node-close').addEventListener('click', () => $('node-dialog').close());
  $('log-close').addEventListener('click', closeLog);
  $('bench-metric').addEventListener('change', renderBench);
  $('node-filter').addEventListener('input', () => { S.limit = PAGE; markDirty('nodes'); });
  $('nodes-more').addEventListener('click', () => { S.limit += PAGE; markDirty('nodes'); });
  setInterval(() => { refreshAges(); if (S.dirty.size === 0) markDirty('series'); }, 1000);
  loadSession();
  connect();
});
