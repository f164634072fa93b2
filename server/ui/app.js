// The Docket web UI: a single page with hash routes.
//
//   #/                      executions, with filters (#/?graph=g&status=s)
//   #/e/<id>                one execution
//   #/graphs                the graphs the server runs
//   #/g/<name>              one graph, with a start form

import { api, stream, h, replace, enc, ago, between, fullTime, badge, toast, errorBox, parseJSON, pretty } from './util.js';
import { renderGraph } from './graph.js';
import { executionView } from './execution.js';

const view = document.getElementById('view');
let cleanup = () => {};
let info = { graphs: 0, version: '' };
let graphNames = [];

async function loadInfo() {
  try {
    info = await api('/info');
    const g = await api('/graphs');
    graphNames = g.graphs.map((x) => x.name);
    const el = document.getElementById('server-info');
    el.textContent = info.graphs ? `${info.graphs} graphs · ${info.version}` : `client only · ${info.version}`;
    el.title = info.graphs ? 'this server runs graphs' : 'this server runs no graphs: their workers run elsewhere';
  } catch (e) {
    toast(e.message, 'error');
  }
}

function route() {
  cleanup();
  cleanup = () => {};
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, query] = hash.split('?');
  const params = new URLSearchParams(query || '');
  document.querySelectorAll('[data-nav]').forEach((a) => a.classList.toggle('active',
    (a.dataset.nav === 'executions') === (path === '/' || path.startsWith('/e/'))));
  let m;
  if ((m = path.match(/^\/e\/(.+)$/))) cleanup = executionView(view, decodeURIComponent(m[1]));
  else if ((m = path.match(/^\/g\/(.+)$/))) cleanup = graphView(view, decodeURIComponent(m[1]));
  else if (path === '/graphs') cleanup = graphsView(view);
  else cleanup = listView(view, params);
  window.scrollTo(0, 0);
}

// ---- executions list ----

function listView(root, params) {
  const filters = { graph: params.get('graph') || '', status: params.get('status') || '' };
  const cursors = params.get('cursor') ? [params.get('cursor')] : [''];
  let stop = () => {};
  const tbody = h('tbody', {});
  const pager = h('div', { className: 'pager' });
  const note = h('span', { className: 'muted live' }, '');
  const select = (name, options) => h('select', {
    id: 'filter-' + name, onchange: (e) => {
      filters[name] = e.target.value;
      const q = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
      location.hash = '#/' + (q.toString() ? '?' + q : '');
    },
  }, options.map(([v, t]) => h('option', { value: v, selected: v === filters[name] }, t)));
  const graphs = [...new Set([...graphNames, filters.graph].filter(Boolean))];
  replace(root,
    h('div', { className: 'page-head' },
      h('h1', {}, 'Executions'),
      h('div', { className: 'filters' },
        h('label', {}, 'Graph ', select('graph', [['', 'all graphs'], ...graphs.map((g) => [g, g])])),
        h('label', {}, 'Status ', select('status', [['', 'any status'], ...['running', 'completed', 'failed', 'cancelled'].map((s) => [s, s])])),
        note,
        info.graphs ? h('a', { className: 'button primary', href: '#/graphs' }, 'Start an execution') : null)),
    h('div', { className: 'card flush' },
      h('table', { className: 'list', id: 'executions' },
        h('thead', {}, h('tr', {}, ['Status', 'Execution', 'Graph', 'Created', 'Duration', 'Error'].map((t) => h('th', {}, t)))),
        tbody)),
    pager);

  function render(page) {
    if (!page.executions.length) {
      replace(tbody, h('tr', {}, h('td', { colSpan: 6, className: 'empty' },
        filters.graph || filters.status ? 'No executions match these filters.' : 'No executions yet.')));
    } else {
      replace(tbody, page.executions.map((x) => h('tr', { dataset: { id: x.id, status: x.status } },
        h('td', {}, badge(x.status)),
        h('td', { className: 'mono' }, h('a', { href: '#/e/' + enc(x.id) }, x.id), x.run > 1 ? h('span', { className: 'muted' }, ` run ${x.run}`) : null),
        h('td', {}, h('a', { href: '#/g/' + enc(x.graph), className: 'muted-link' }, x.graph)),
        h('td', { title: fullTime(x.created_at), dataset: { t: x.created_at } }, ago(x.created_at)),
        h('td', {}, between(x.created_at, x.finished_at)),
        h('td', { className: 'error-cell', title: x.error || '' }, x.error || ''))));
    }
    replace(pager,
      h('button', { disabled: cursors.length < 2, onclick: () => { cursors.pop(); open(); } }, '← Newer'),
      h('span', { className: 'muted' }, `page ${cursors.length}`),
      h('button', { id: 'older', disabled: !page.next_cursor, onclick: () => { cursors.push(page.next_cursor); open(); } }, 'Older →'));
  }

  function open() {
    stop();
    const q = new URLSearchParams({ limit: '25' });
    if (filters.graph) q.set('graph', filters.graph);
    if (filters.status) q.set('status', filters.status);
    const cur = cursors[cursors.length - 1];
    if (cur) q.set('cursor', cur);
    note.textContent = 'connecting…';
    stop = stream('/events?' + q, 'executions', (page) => {
      note.textContent = '● live';
      note.classList.add('on');
      render(page);
    }, (err) => { note.textContent = ''; replace(tbody, h('tr', {}, h('td', { colSpan: 6 }, errorBox(err)))); });
  }
  open();
  // Relative times keep moving.
  const tick = setInterval(() => tbody.querySelectorAll('td[data-t]').forEach((td) => {
    td.textContent = ago(td.dataset.t);
  }), 5000);
  return () => { stop(); clearInterval(tick); };
}

// ---- graphs ----

function graphsView(root) {
  replace(root, h('div', { className: 'page-head' }, h('h1', {}, 'Graphs')), h('p', { className: 'muted' }, 'Loading…'));
  api('/graphs').then((res) => {
    if (!res.graphs.length) {
      replace(root, h('div', { className: 'page-head' }, h('h1', {}, 'Graphs')),
        h('div', { className: 'card' }, h('p', {}, 'This server runs no graphs: it serves a store whose graphs run in other processes. ',
          'Executions can still be listed, described, signalled and cancelled here.')));
      return;
    }
    replace(root, h('div', { className: 'page-head' }, h('h1', {}, 'Graphs')),
      h('div', { className: 'grid' }, res.graphs.map((g) => h('a', { className: 'card graph-card', href: '#/g/' + enc(g.name), dataset: { graph: g.name } },
        h('h3', {}, g.name),
        h('p', { className: 'muted' }, `${g.steps.length} step${g.steps.length === 1 ? '' : 's'} · takes ${g.inputs.join(', ') || 'nothing'} · makes ${g.results.join(', ')}`),
        h('div', { className: 'thumb' }, renderGraph(g.layout))))));
  }).catch((e) => replace(root, errorBox(e)));
  return () => {};
}

function graphView(root, name) {
  replace(root, h('p', { className: 'muted' }, 'Loading…'));
  let alive = true;
  api('/graphs/' + enc(name)).then((g) => {
    if (!alive) return;
    const skeleton = {};
    for (const t of g.inputs) skeleton[t] = null;
    const inputs = h('textarea', { id: 'start-inputs', rows: 8, spellcheck: false },
      g.example ? JSON.stringify(g.example, null, 2) : JSON.stringify(skeleton, null, 2));
    const id = h('input', { id: 'start-id', placeholder: 'random when empty', autocomplete: 'off' });
    const timeout = h('input', { id: 'start-timeout', placeholder: 'e.g. 10m (optional)' });
    const result = h('select', { id: 'start-result' }, g.results.map((r) => h('option', { value: r }, r)));
    const out = h('div', {});
    const recent = h('div', {});
    const start = async (ev) => {
      ev.preventDefault();
      try {
        const body = { graph: g.name, inputs: parseJSON(inputs.value, 'Inputs') };
        if (id.value.trim()) body.id = id.value.trim();
        if (timeout.value.trim()) body.timeout = timeout.value.trim();
        if (g.results.length > 1) body.result = result.value;
        const res = await api('/executions', { method: 'POST', body });
        toast(res.created ? `Started ${res.id}` : `${res.id} already exists`);
        location.hash = '#/e/' + enc(res.id);
      } catch (e) {
        replace(out, errorBox(e));
      }
    };
    replace(root,
      h('div', { className: 'crumbs' }, h('a', { href: '#/graphs' }, 'Graphs'), ' / ', g.name),
      h('div', { className: 'page-head' }, h('h1', {}, g.name)),
      h('div', { className: 'card' },
        h('div', { className: 'card-head' }, h('h2', {}, 'Graph'),
          h('span', { className: 'muted' }, `takes ${g.inputs.join(', ') || 'nothing'} · makes ${g.results.join(', ')}`)),
        h('div', { className: 'graph-wrap' }, renderGraph(g.layout))),
      h('div', { className: 'cols' },
        h('div', { className: 'card' }, h('h2', {}, 'Steps'),
          h('table', { className: 'list' },
            h('thead', {}, h('tr', {}, ['Step', 'Takes', 'Makes', 'Retries', 'Timeout'].map((t) => h('th', {}, t)))),
            h('tbody', {}, g.steps.map((s) => h('tr', {},
              h('td', { className: 'mono' }, s.name, s.race ? h('span', { className: 'tag' }, 'race') : null, s.map ? h('span', { className: 'tag' }, 'map') : null),
              h('td', { className: 'mono small' }, (s.inputs || []).join(', ')),
              h('td', { className: 'mono small' }, s.output),
              h('td', {}, s.retries || ''),
              h('td', {}, s.timeout || '')))))),
        h('form', { className: 'card form', id: 'start-form', onsubmit: start },
          h('h2', {}, 'Start an execution'),
          h('label', {}, 'Execution ID', id),
          h('label', {}, 'Inputs (JSON, by type name)', inputs),
          g.results.length > 1 ? h('label', {}, 'Result', result) : null,
          h('label', {}, 'Timeout', timeout),
          h('div', { className: 'actions' }, h('button', { className: 'primary', type: 'submit' }, 'Start')),
          out)),
      h('div', { className: 'card' }, h('h2', {}, 'Recent executions'), recent));
    api('/executions?limit=10&graph=' + enc(g.name)).then((page) => replace(recent,
      page.executions.length ? h('table', { className: 'list' }, h('tbody', {}, page.executions.map((x) => h('tr', {},
        h('td', {}, badge(x.status)), h('td', { className: 'mono' }, h('a', { href: '#/e/' + enc(x.id) }, x.id)),
        h('td', { title: fullTime(x.created_at) }, ago(x.created_at)), h('td', { className: 'error-cell' }, x.error || '')))))
        : h('p', { className: 'muted' }, 'None yet.'))).catch((e) => replace(recent, errorBox(e)));
  }).catch((e) => replace(root, errorBox(e), pretty({ graph: name })));
  return () => { alive = false; };
}

window.addEventListener('hashchange', route);
loadInfo().then(route);
