// Helpers shared by the views: the API client, element building and
// formatting.

export const base = document.querySelector('meta[name="docket-base"]')?.content || '';
const apiRoot = base + '/api/v1';

// ApiError is a failed API call: code and message come from the server's
// error body.
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// api calls the HTTP API and returns the decoded JSON answer.
export async function api(path, { method = 'GET', body } = {}) {
  const opts = { method, headers: {} };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = typeof body === 'string' ? body : JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(apiRoot + path, opts);
  } catch (e) {
    throw new ApiError(0, 'network', 'cannot reach the server: ' + e.message);
  }
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { /* not JSON */ }
  if (!res.ok) {
    const err = data && data.error;
    throw new ApiError(res.status, err ? err.code : 'http_' + res.status, err ? err.message : text || res.statusText);
  }
  return data;
}

// stream opens a server-sent event stream and calls onData with each event
// of the given name. It returns a function that closes the stream.
export function stream(path, name, onData, onError) {
  const es = new EventSource(apiRoot + path);
  es.addEventListener(name, (ev) => onData(JSON.parse(ev.data)));
  es.addEventListener('error', (ev) => {
    if (ev.data) { // the server's error event: the stream is over
      es.close();
      const err = JSON.parse(ev.data).error;
      onError && onError(new ApiError(0, err.code, err.message));
    } else if (es.readyState === EventSource.CLOSED) {
      onError && onError(new ApiError(0, 'stream', 'the live connection to the server was lost; reload the page'));
    }
  });
  return () => es.close();
}

export const enc = encodeURIComponent;

// h builds an element: h('a', {href: '#', class: 'x', onclick: fn}, 'text', child).
export function h(tag, attrs, ...children) {
  const svg = ['svg', 'g', 'rect', 'path', 'text', 'title', 'defs', 'marker', 'circle', 'tspan'].includes(tag);
  const el = svg ? document.createElementNS('http://www.w3.org/2000/svg', tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (!svg && k in el && k !== 'list' && k !== 'form') el[k] = v;
    else el.setAttribute(k === 'className' ? 'class' : k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

// replace swaps the children of el for the given nodes.
export function replace(el, ...children) {
  el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

const isZero = (t) => !t || t.startsWith('0001-');

// ago says how long ago t was: "12s ago".
export function ago(t) {
  if (isZero(t)) return '';
  const s = (Date.now() - Date.parse(t)) / 1000;
  if (s < 0) return 'in ' + duration(-s * 1000);
  return duration(s * 1000) + ' ago';
}

// duration formats milliseconds: 850ms, 4.2s, 3m 20s, 2h 5m, 3d 4h.
export function duration(ms) {
  if (ms < 1000) return Math.round(ms) + 'ms';
  const s = ms / 1000;
  if (s < 60) return (s < 10 ? s.toFixed(1) : Math.round(s)) + 's';
  const m = Math.floor(s / 60);
  if (m < 60) return m + 'm ' + Math.round(s % 60) + 's';
  const hr = Math.floor(m / 60);
  if (hr < 48) return hr + 'h ' + (m % 60) + 'm';
  return Math.floor(hr / 24) + 'd ' + (hr % 24) + 'h';
}

// between is the time from a to b (or to now when b is unset).
export function between(a, b) {
  if (isZero(a)) return '';
  const end = isZero(b) ? Date.now() : Date.parse(b);
  return duration(end - Date.parse(a));
}

// clock formats a time as 15:04:05.000 (local), with the date when not today.
export function clock(t) {
  if (isZero(t)) return '';
  const d = new Date(t);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
  return d.toDateString() === new Date().toDateString() ? hms : d.toISOString().slice(0, 10) + ' ' + hms;
}

export function fullTime(t) {
  return isZero(t) ? '' : new Date(t).toLocaleString();
}

// badge is a status pill.
export function badge(status, text) {
  return h('span', { className: 'badge s-' + status, dataset: { status } }, text || status);
}

// pretty shows a JSON value (or a Value from the API) in a <pre>.
export function pretty(v) {
  let text;
  if (v && typeof v === 'object' && 'value' in v && 'type' in v) {
    text = v.encoding === 'base64' ? '(binary, base64) ' + v.value : JSON.stringify(v.value, null, 2);
  } else {
    text = JSON.stringify(v, null, 2);
  }
  return h('pre', { className: 'json' }, text === undefined ? 'null' : text);
}

// parseJSON reads a form's JSON text, or throws a readable error.
export function parseJSON(text, what) {
  if (text.trim() === '') return undefined;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(0, 'bad_json', `${what} is not valid JSON: ${e.message}`);
  }
}

// toast shows a short message at the bottom of the page.
export function toast(msg, kind = 'info') {
  const box = document.getElementById('toast');
  const el = h('div', { className: 'toast ' + kind }, msg);
  box.append(el);
  setTimeout(() => el.remove(), 5000);
}

// errorBox shows an API error in a form.
export function errorBox(err) {
  return h('div', { className: 'result error', dataset: { code: err.code || '' } },
    h('strong', {}, err.code ? err.code + ': ' : 'error: '), err.message);
}

// stepState is the colour key of a step: its status, or its compensation's.
export function stepState(step) {
  if (!step) return 'pending';
  if (step.compensation === 'compensated') return 'compensated';
  if (step.compensation === 'failed') return 'compensation-failed';
  if (step.compensation === 'pending') return 'compensating';
  return step.status;
}

export const stateLabels = {
  pending: 'pending', ready: 'ready', running: 'running', suspended: 'suspended', done: 'done',
  failed: 'failed', cancelled: 'cancelled', compensating: 'compensating', compensated: 'compensated',
  'compensation-failed': 'compensation failed',
};
