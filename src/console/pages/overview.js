// Overview: nodes, connections per door, publish and delivery rates as live charts, memory, health.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { get } from '../api.js';
import { LiveChart } from '../chart.js';
import { bytes, num, time } from '../format.js';

const POINTS = 60;
const DOORS = ['websocket', 'sse', 'longpoll', 'mqtt'];

const sum = (nodes, pick) => nodes.reduce((n, x) => n + pick(x), 0);
const deliveries = (n) => Object.values(n.deliveries).reduce((a, b) => a + b, 0);

export function Overview() {
  const [stats, setStats] = useState(null);
  const [error, setError] = useState('');
  const [series, setSeries] = useState([[], [], []]);
  const last = useRef(null);
  useEffect(() => {
    let stop = false;
    const tick = async () => {
      try {
        const s = await get('stats');
        if (stop) return;
        const now = Date.now() / 1000;
        const totals = { at: now, published: sum(s.nodes, (n) => n.published), delivered: sum(s.nodes, deliveries) };
        const prev = last.current;
        last.current = totals;
        if (prev) {
          const dt = Math.max(0.001, totals.at - prev.at);
          setSeries((old) => {
            const keep = (a, v) => [...a, v].slice(-POINTS);
            return [keep(old[0], now), keep(old[1], Math.max(0, (totals.published - prev.published) / dt)), keep(old[2], Math.max(0, (totals.delivered - prev.delivered) / dt))];
          });
        }
        setStats(s);
        setError('');
      } catch (e) {
        if (!stop) setError(e.message);
      }
    };
    void tick();
    const t = setInterval(tick, 1000);
    return () => {
      stop = true;
      clearInterval(t);
    };
  }, []);
  if (!stats) return html`<h1>Overview</h1>${error ? html`<p class="error" role="alert">${error}</p>` : html`<p>Loading…</p>`}`;
  const nodes = stats.nodes;
  const published = sum(nodes, (n) => n.published);
  const delivered = sum(nodes, deliveries);
  const unhealthy = nodes.filter((n) => n.unhealthy);
  return html`
    <h1>Overview</h1>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    <section class="tiles" aria-label="Totals">
      <div class="card tile"><span class="label">Nodes</span><span class="value" id="stat-nodes">${nodes.length}</span></div>
      <div class="card tile"><span class="label">Messages published</span><span class="value" id="stat-published">${num(published)}</span></div>
      <div class="card tile"><span class="label">Deliveries</span><span class="value" id="stat-deliveries">${num(delivered)}</span></div>
      <div class="card tile">
        <span class="label">Store (${stats.store}) and bus (${stats.bus})</span>
        <span class=${unhealthy.length ? 'value bad' : 'value good'} id="stat-health">${unhealthy.length ? unhealthy.map((n) => n.unhealthy).join('; ') : 'healthy'}</span>
      </div>
    </section>
    <section class="charts" aria-label="Rates">
      <${LiveChart} title="Publishes per second" data=${[series[0], series[1]]} series=${[{ label: 'publishes/s', color: '#1f5fbf' }]} />
      <${LiveChart} title="Deliveries per second" data=${[series[0], series[2]]} series=${[{ label: 'deliveries/s', color: '#0a7a3d' }]} />
    </section>
    <section aria-labelledby="nodes-h">
      <h2 id="nodes-h">Nodes</h2>
      <div class="scroll" tabindex="0">
        <table>
          <thead><tr><th scope="col">Node</th>${DOORS.map((d) => html`<th scope="col" class="num">${d}</th>`)}<th scope="col" class="num">Subscribers</th><th scope="col">Memory (RSS / heap)</th><th scope="col">Up since</th><th scope="col">State</th></tr></thead>
          <tbody>
            ${nodes.map(
              (n) => html`<tr>
                <td><code>${n.node}</code></td>
                ${DOORS.map((d) => html`<td class="num">${num(n.connections[d] ?? 0)}</td>`)}
                <td class="num">${num(n.subscribers)}</td>
                <td>${bytes(n.memory.rss)} / ${bytes(n.memory.heapUsed)}</td>
                <td>${time(n.at - n.uptime * 1000)}</td>
                <td>${n.draining ? 'draining' : n.unhealthy ? n.unhealthy : 'ok'}</td>
              </tr>`,
            )}
          </tbody>
        </table>
      </div>
      ${stats.problems.length > 0 && html`<p class="error" role="alert">${stats.problems.map((p) => `${p.node}: ${p.error}`).join('; ')}</p>`}
    </section>
  `;
}
