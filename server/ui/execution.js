// The page of one execution: its graph coloured by step state, the steps,
// inputs and result, a timeline of its history, and forms to signal,
// update, query and cancel it. It stays live through an event stream.

import {
  api, stream, h, replace, enc, ago, between, clock, fullTime, badge, pretty, parseJSON,
  toast, errorBox, stepState, stateLabels,
} from './util.js';
import { renderGraph, legend } from './graph.js';

const finished = (s) => ['completed', 'failed', 'cancelled'].includes(s);
const builtinQueries = ['docket.status', 'docket.outputs', 'docket.waiting'];

export function executionView(root, id) {
  let x = null;
  let history = [];
  let graph = null; // GraphInfo when the server runs the graph
  let selected = null;
  let stop = () => {};
  let alive = true;

  const head = h('div', { id: 'exec-head' });
  const banners = h('div', {});
  const graphBox = h('div', { className: 'graph-wrap', id: 'exec-graph' });
  const graphNote = h('div', {});
  const stepsBody = h('tbody', { id: 'steps' });
  const detail = h('div', { id: 'step-detail' });
  const io = h('div', { id: 'io' });
  const timeline = h('ol', { className: 'timeline', id: 'timeline' });
  const live = h('span', { className: 'muted live' }, 'connecting…');

  // ---- forms: built once, so what people type survives live updates ----
  const sigNames = h('datalist', { id: 'signal-names' });
  const sigName = h('input', { id: 'signal-name', list: 'signal-names', placeholder: 'signal name', autocomplete: 'off', required: true });
  const sigPayload = h('textarea', { id: 'signal-payload', rows: 4, spellcheck: false, placeholder: 'JSON payload, e.g. {"approved": true}' });
  const sigOut = h('div', { className: 'out', id: 'signal-result' });
  let sigTouched = false;
  sigPayload.addEventListener('input', () => { sigTouched = true; });
  sigName.addEventListener('change', () => fillExample(sigName, sigPayload, graph && graph.signal_examples, sigTouched));
  const signalForm = h('form', {
    className: 'form', id: 'signal-form', onsubmit: (ev) => submit(ev, sigOut, async () => {
      const payload = parseJSON(sigPayload.value, 'The payload');
      const res = await api(`/executions/${enc(id)}/signals`, { method: 'POST', body: { name: sigName.value.trim(), payload } });
      return h('div', { className: 'result ok' }, `Signal “${sigName.value.trim()}” sent.`, res.note ? h('div', { className: 'muted' }, res.note) : null);
    }),
  }, h('h3', {}, 'Signal'), sigNames, h('label', {}, 'Name', sigName), h('label', {}, 'Payload', sigPayload),
  h('div', { className: 'actions' }, h('button', { type: 'submit', className: 'primary', id: 'signal-send' }, 'Send signal')), sigOut);

  const updNames = h('datalist', { id: 'update-names' });
  const updName = h('input', { id: 'update-name', list: 'update-names', placeholder: 'update name', autocomplete: 'off', required: true });
  const updReq = h('textarea', { id: 'update-request', rows: 3, spellcheck: false, placeholder: 'JSON request' });
  const updOut = h('div', { className: 'out', id: 'update-result' });
  updName.addEventListener('change', () => fillExample(updName, updReq, graph && graph.update_examples, false));
  const updateForm = h('form', {
    className: 'form', id: 'update-form', onsubmit: (ev) => submit(ev, updOut, async () => {
      const request = parseJSON(updReq.value, 'The request');
      const res = await api(`/executions/${enc(id)}/updates`, { method: 'POST', body: { name: updName.value.trim(), request } });
      return h('div', { className: 'result ok' }, h('div', {}, 'Response:'), pretty(res.response));
    }),
  }, h('h3', {}, 'Update'), updNames, h('label', {}, 'Name', updName), h('label', {}, 'Request', updReq),
  h('div', { className: 'actions' }, h('button', { type: 'submit', id: 'update-send' }, 'Send update')), updOut);

  const qNames = h('datalist', { id: 'query-names' });
  const qName = h('input', { id: 'query-name', list: 'query-names', value: 'docket.status', autocomplete: 'off', required: true });
  const qOut = h('div', { className: 'out', id: 'query-result' });
  const queryForm = h('form', {
    className: 'form', id: 'query-form', onsubmit: (ev) => submit(ev, qOut, async () => {
      const res = await api(`/executions/${enc(id)}/queries/${enc(qName.value.trim())}`);
      return h('div', { className: 'result ok' }, pretty(res.answer));
    }),
  }, h('h3', {}, 'Query'), qNames, h('label', {}, 'Name', qName),
  h('div', { className: 'actions' }, h('button', { type: 'submit', id: 'query-send' }, 'Ask')), qOut);

  const cancelBtn = h('button', {
    className: 'danger', id: 'cancel', onclick: async () => {
      if (!confirm(`Cancel ${id}? Running steps are stopped and completed ones compensated.`)) return;
      try {
        const res = await api(`/executions/${enc(id)}/cancel`, { method: 'POST' });
        toast(res.note || 'Cancellation requested');
      } catch (e) {
        toast(e.message, 'error');
      }
    },
  }, 'Cancel execution');

  async function submit(ev, out, fn) {
    ev.preventDefault();
    const btn = ev.target.querySelector('button[type=submit]');
    btn.disabled = true;
    replace(out, h('div', { className: 'muted' }, 'Sending…'));
    try {
      replace(out, await fn());
    } catch (e) {
      replace(out, errorBox(e));
    } finally {
      btn.disabled = false;
    }
  }

  function fillExample(nameEl, textEl, examples, touched) {
    const ex = examples && examples[nameEl.value.trim()];
    if (ex !== undefined && (!touched || !textEl.value.trim())) textEl.value = JSON.stringify(ex, null, 2);
  }

  replace(root,
    head, banners,
    h('div', { className: 'card' },
      h('div', { className: 'card-head' }, h('h2', {}, 'Graph'), live),
      graphNote, graphBox, legend()),
    h('div', { className: 'cols wide-left' },
      h('div', {},
        h('div', { className: 'card' }, h('h2', {}, 'Steps'),
          h('table', { className: 'list steps' },
            h('thead', {}, h('tr', {}, ['Step', 'State', 'Attempts', 'Ready', 'Took', 'Waiting on / error'].map((t) => h('th', {}, t)))),
            stepsBody),
          detail),
        h('div', { className: 'card' }, io),
        h('div', { className: 'card' }, h('h2', {}, 'Timeline'), timeline)),
      h('div', { className: 'side' },
        h('div', { className: 'card' }, h('h2', {}, 'Act on it'), signalForm, updateForm, queryForm,
          h('div', { className: 'form' }, h('h3', {}, 'Cancel'), h('p', { className: 'muted small' },
            'Stops running steps, drops waiting ones, then compensates completed ones.'), cancelBtn)))));

  function renderHead() {
    const dur = between(x.created_at, x.finished_at);
    replace(head,
      h('div', { className: 'crumbs' }, h('a', { href: '#/' }, 'Executions'), ' / ', h('span', { className: 'mono' }, x.id)),
      h('div', { className: 'page-head' },
        h('h1', { className: 'mono', id: 'exec-id' }, x.id),
        h('span', { id: 'exec-status' }, badge(x.status)),
        x.cancel_requested && !finished(x.status) ? h('span', { className: 'tag warn' }, 'cancel requested') : null),
      h('div', { className: 'meta' },
        h('span', {}, 'graph ', h('a', { href: '#/g/' + enc(x.graph) }, x.graph)),
        h('span', {}, 'run ', x.run),
        h('span', { title: fullTime(x.created_at) }, 'started ', ago(x.created_at)),
        h('span', {}, finished(x.status) ? 'took ' + dur : 'running for ' + dur),
        x.deadline ? h('span', { title: fullTime(x.deadline) }, 'deadline ', ago(x.deadline)) : null,
        x.parent ? h('span', {}, 'child of ', h('a', { className: 'mono', href: '#/e/' + enc(x.parent) }, x.parent), ` (step ${x.parent_step})`) : null));
    const bs = [];
    if (x.error) bs.push(h('div', { className: 'banner error', id: 'exec-error' }, h('strong', {}, x.status === 'cancelled' ? 'Cancelled: ' : 'Failed: '), x.error));
    if (x.waiting.length && !finished(x.status)) {
      bs.push(h('div', { className: 'banner wait', id: 'exec-waiting' }, h('strong', {}, 'Waiting: '), x.waiting.join(' · ')));
    }
    if (x.status === 'completed') bs.push(h('div', { className: 'banner ok' }, h('strong', {}, 'Completed'), ' in ', dur));
    replace(banners, bs);
  }

  let drawn = '';
  function renderGraphBox() {
    const steps = new Map(x.steps.map((s) => [s.name, s]));
    const svg = renderGraph(x.layout, { steps, selected, onSelect: (name) => { selected = selected === name ? null : name; renderAll(); } });
    // Redraw only when the drawing changed, so hovering and clicking are
    // not disturbed by live updates.
    const key = svg.outerHTML;
    if (key !== drawn) {
      drawn = key;
      replace(graphBox, svg);
    }
    replace(graphNote, x.layout.partial
      ? h('p', { className: 'muted small' }, `This server does not run graph “${x.graph}”, so it does not know how the steps connect; they are shown by when they became ready.`)
      : null);
  }

  function renderSteps() {
    replace(stepsBody, x.steps.map((s) => {
      const st = stepState(s);
      return h('tr', {
        className: 'clickable' + (selected === s.name ? ' selected' : ''), dataset: { step: s.name, state: st },
        onclick: () => { selected = selected === s.name ? null : s.name; renderAll(); },
      },
      h('td', { className: 'mono' }, s.name),
      h('td', {}, badge(st, stateLabels[st])),
      h('td', {}, s.attempts || ''),
      h('td', { title: fullTime(s.ready_at) }, clock(s.ready_at)),
      h('td', { title: 'from ready to finished' }, s.finished_at ? between(s.ready_at || s.started_at, s.finished_at) : ''),
      h('td', { className: 'small' }, s.wait || s.compensation_error || s.error || ''));
    }));
    const s = selected && x.steps.find((st) => st.name === selected);
    if (!s) {
      replace(detail, h('p', { className: 'muted small' }, 'Click a step (here or in the graph) for its details.'));
      return;
    }
    const kids = (x.children || []).filter((c) => c.step === s.name);
    const row = (k, v) => (v || v === 0 ? h('tr', {}, h('th', {}, k), h('td', {}, v)) : null);
    replace(detail, h('div', { className: 'detail', id: 'selected-step' },
      h('h3', {}, s.name, ' ', badge(stepState(s), stateLabels[stepState(s)])),
      h('table', { className: 'kv' }, h('tbody', {},
        row('Attempts', s.attempts),
        row('Ready', clock(s.ready_at)), row('Started', clock(s.started_at)), row('Finished', clock(s.finished_at)),
        row('Waiting on', s.wait), row('Wakes', s.wake_at && !s.wake_at.startsWith('9999-') ? `${clock(s.wake_at)} (${ago(s.wake_at)})` : ''),
        row('Error', s.error),
        row('Compensation', s.compensation ? `${s.compensation} after ${s.compensation_attempts} attempt(s)` : ''),
        row('Compensation error', s.compensation_error),
        row('Children', kids.length ? h('span', {}, kids.map((c) => h('a', { className: 'mono child', href: '#/e/' + enc(c.id) }, c.id))) : ''))),
      s.output ? h('div', {}, h('div', { className: 'muted small' }, 'Output ', h('span', { className: 'mono' }, s.output.type)), pretty(s.output)) : null));
  }

  function renderIO() {
    replace(io,
      h('h2', {}, 'Inputs and result'),
      x.inputs.map((v) => h('div', { className: 'value' }, h('div', { className: 'muted small' }, 'input ', h('span', { className: 'mono' }, v.type)), pretty(v))),
      x.result ? h('div', { className: 'value', id: 'exec-result' }, h('div', { className: 'muted small' }, 'result ', h('span', { className: 'mono' }, x.result.type)), pretty(x.result)) : null,
      !x.result && !finished(x.status) ? h('p', { className: 'muted small' }, `The result (${x.target}) is not ready yet.`) : null,
      x.children && x.children.length ? h('div', {}, h('div', { className: 'muted small' }, 'Child executions'),
        h('ul', { className: 'children' }, x.children.map((c) => h('li', {}, h('a', { className: 'mono', href: '#/e/' + enc(c.id) }, c.id), h('span', { className: 'muted' }, ` ${c.graph}, from ${c.step}`))))) : null);
  }

  function renderTimeline() {
    replace(timeline, history.map((e) => h('li', { className: 'ev k-' + e.kind, dataset: { kind: e.kind } },
      h('span', { className: 'when', title: fullTime(e.time) }, e.time ? clock(e.time) : ''),
      h('span', { className: 'kind' }, e.kind),
      h('span', { className: 'what' },
        e.step ? h('span', { className: 'mono step' }, e.step) : null,
        e.name ? h('span', { className: 'name' }, e.name) : null,
        e.detail ? h('span', { className: 'muted' }, e.detail) : null,
        e.error ? h('span', { className: 'err' }, e.error) : null))));
  }

  function renderForms() {
    const done = finished(x.status);
    const sigs = [...new Set([...(x.signals || []), ...Object.keys((graph && graph.signals) || {})])];
    replace(sigNames, sigs.map((s) => h('option', { value: s })));
    if (!sigName.value && x.signals && x.signals.length) {
      sigName.value = x.signals[0];
      fillExample(sigName, sigPayload, graph && graph.signal_examples, sigTouched);
    }
    replace(updNames, Object.keys((graph && graph.update_examples) || {}).map((s) => h('option', { value: s })));
    if (!updName.value && graph && graph.update_examples) {
      updName.value = Object.keys(graph.update_examples)[0] || '';
      fillExample(updName, updReq, graph.update_examples, false);
    }
    replace(qNames, [...builtinQueries, ...((graph && graph.queries) || [])].map((s) => h('option', { value: s })));
    for (const el of [...signalForm.elements, ...updateForm.elements]) el.disabled = done;
    if (!x.graph_served) {
      for (const el of updateForm.elements) el.disabled = true;
      updateForm.title = 'Updates are answered by a process that runs the graph.';
    }
    cancelBtn.disabled = done || x.cancel_requested;
  }

  function renderAll() {
    if (!x) return;
    renderHead();
    renderGraphBox();
    renderSteps();
    renderIO();
    renderTimeline();
    renderForms();
  }

  replace(head, h('p', { className: 'muted' }, 'Loading…'));
  api('/executions/' + enc(id)).then(async (first) => {
    if (!alive) return;
    x = first;
    try {
      graph = await api('/graphs/' + enc(x.graph));
    } catch { graph = null; }
    if (!alive) return;
    renderAll();
    stop = stream(`/executions/${enc(id)}/events`, 'execution', (snap) => {
      x = snap.execution;
      history = snap.history;
      live.textContent = finished(x.status) ? 'finished' : '● live';
      live.classList.toggle('on', !finished(x.status));
      renderAll();
    }, (err) => { live.textContent = err.message; });
  }).catch((e) => {
    replace(root, h('div', { className: 'crumbs' }, h('a', { href: '#/' }, 'Executions'), ' / ', id), errorBox(e));
  });
  // Countdowns and durations keep moving between events.
  const tick = setInterval(() => { if (x && !finished(x.status)) { renderHead(); renderGraphBox(); } }, 1000);
  return () => { alive = false; stop(); clearInterval(tick); };
}
