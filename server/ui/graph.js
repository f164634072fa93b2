// Draws a graph layout (computed by the server: layers left to right) as
// SVG, each step coloured by its state.

import { h, stepState, stateLabels, duration } from './util.js';

const trim = (s, n) => (s.length > n ? s.slice(0, n - 1) + '…' : s);

// statusLine is the second line of a step's box.
function statusLine(step) {
  if (!step) return 'pending';
  const st = stepState(step);
  let line = stateLabels[st] || st;
  if (st === 'suspended' && step.wait) line = step.wait.replace(/ until .*/, '');
  if (st === 'suspended' && step.wake_at && !step.wake_at.startsWith('0001-') && !step.wake_at.startsWith('9999-')) {
    const left = Date.parse(step.wake_at) - Date.now();
    if (left > 0 && left < 7 * 864e5) line += ' · ' + duration(left);
  }
  if (step.attempts > 1) line += ` · ${step.attempts} attempts`;
  return line;
}

// edgePath is a smooth path through the points of an edge.
function edgePath(pts) {
  let d = `M${pts[0].x},${pts[0].y}`;
  for (let i = 1; i < pts.length; i++) {
    const a = pts[i - 1];
    const b = pts[i];
    const mx = (a.x + b.x) / 2;
    d += ` C${mx},${a.y} ${mx},${b.y} ${b.x},${b.y}`;
  }
  return d;
}

// renderGraph returns an <svg> of layout. steps maps step names to the
// execution's steps (omit it for a graph's static drawing); onSelect is
// called with a step name when its box is clicked.
export function renderGraph(layout, { steps, selected, onSelect } = {}) {
  const width = Math.max(layout.width, 200);
  const height = Math.max(layout.height, 80);
  const svg = h('svg', {
    class: 'graph', viewBox: `0 0 ${width} ${height}`, width, height,
    role: 'img', 'aria-label': 'execution graph',
  });
  svg.append(h('defs', {},
    h('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: 'auto-start-reverse' },
      h('path', { d: 'M 0 0 L 10 5 L 0 10 z', class: 'arrowhead' }))));
  const nodes = new Map(layout.nodes.map((n) => [n.id, n]));
  const state = (n) => (n.kind === 'input' ? 'input' : steps ? stepState(steps.get(n.step)) : 'static');
  for (const e of layout.edges) {
    const from = nodes.get(e.from);
    const live = from && steps && ['done', 'compensated', 'compensating', 'compensation-failed', 'input'].includes(state(from));
    svg.append(h('path', { d: edgePath(e.points), class: 'edge' + (live ? ' live' : ''), 'marker-end': 'url(#arrow)' },
      h('title', {}, `${e.type}: ${e.from.replace(/^\w+:/, '')} → ${e.to.replace(/^\w+:/, '')}`)));
  }
  for (const n of layout.nodes) {
    const st = state(n);
    const step = steps && steps.get(n.step);
    const g = h('g', {
      class: `node k-${n.kind} st-${st}` + (selected && selected === n.step ? ' selected' : ''),
      transform: `translate(${n.x},${n.y})`,
      dataset: { step: n.step || '', state: st },
    });
    if (n.kind === 'input') {
      g.append(
        h('rect', { width: n.w, height: n.h, rx: n.h / 2, class: 'box' }),
        h('text', { x: n.w / 2, y: n.h / 2 - 4, 'text-anchor': 'middle', class: 'small muted' }, 'input'),
        h('text', { x: n.w / 2, y: n.h / 2 + 12, 'text-anchor': 'middle', class: 'label' }, trim(n.label, 24)),
        h('title', {}, 'graph input ' + n.type));
    } else {
      g.append(
        h('rect', { width: n.w, height: n.h, rx: 9, class: 'box' }),
        h('rect', { width: 6, height: n.h - 2, x: 1, y: 1, rx: 3, class: 'stripe' }),
        h('text', { x: 16, y: 20, class: 'label' }, trim(n.label, 22)),
        h('text', { x: 16, y: 36, class: 'small status' }, trim(steps ? statusLine(step) : n.kind === 'signal' ? 'waits for a signal' : 'step', 28)),
        h('text', { x: 16, y: 50, class: 'small muted' }, trim('→ ' + (n.type || '?'), 30)),
        h('title', {}, `${n.step}${n.type ? ' → ' + n.type : ''}${step ? '\n' + statusLine(step) : ''}${step && step.error ? '\n' + step.error : ''}`));
      if (onSelect) {
        g.classList.add('clickable');
        g.addEventListener('click', () => onSelect(n.step));
      }
    }
    svg.append(g);
  }
  return svg;
}

// legend lists the state colours.
export function legend() {
  const keys = ['pending', 'ready', 'running', 'suspended', 'done', 'failed', 'cancelled', 'compensating', 'compensated', 'compensation-failed'];
  return h('div', { className: 'legend' },
    keys.map((k) => h('span', { className: 'key' }, h('i', { className: 'sw st-' + k }), stateLabels[k])));
}
