// Web Push: subscriptions, deliveries waiting in the queue, and the ones given up on.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { get } from '../api.js';
import { time } from '../format.js';

function Table({ caption, head, rows, empty }) {
  return html`<div class="scroll" tabindex="0"><table>
    <caption>${caption}</caption>
    <thead><tr>${head.map((h) => html`<th scope="col">${h}</th>`)}</tr></thead>
    <tbody>
      ${rows.length === 0 && html`<tr><td colspan=${head.length}>${empty}</td></tr>`}
      ${rows.map((r) => html`<tr>${r.map((c) => html`<td>${c}</td>`)}</tr>`)}
    </tbody>
  </table></div>`;
}

export function WebPush() {
  const [w, setW] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    get('webpush', { limit: 100 }).then(setW, (e) => setError(e.message));
  }, []);
  if (error) return html`<h1>Web Push</h1><p class="error" role="alert">${error}</p>`;
  if (!w) return html`<h1>Web Push</h1><p>Loading…</p>`;
  if (!w.enabled) return html`<h1>Web Push</h1><p>Web Push is off on this server (set <code>webpush.subject</code>).</p>`;
  return html`
    <h1>Web Push</h1>
    <p class="muted">${w.total.subscriptions} subscriptions, ${w.total.pending} deliveries pending on node <code>${w.node}</code>.</p>
    <section aria-labelledby="wp-subs"><h2 id="wp-subs">Subscriptions</h2>
      <${Table} caption="Browser push subscriptions" head=${['Id', 'Push service', 'Principal', 'Filters', 'Mode', 'Created', 'State']}
        rows=${w.subscriptions.map((s) => [html`<code>${s.id}</code>`, s.origin, s.principal, s.filters.join(', '), s.mode, time(s.createdAt), s.failing ? `failing (${s.failing.status})` : 'ok'])}
        empty="No subscriptions." />
    </section>
    <section aria-labelledby="wp-pending"><h2 id="wp-pending">Pending deliveries</h2>
      <${Table} caption="Queued, oldest first" head=${['Subscription', 'Push service', 'Cursor', 'Attempts', 'Not before', 'Give up at']}
        rows=${w.pending.map((e) => [html`<code>${e.subscription}</code>`, e.origin, html`<code>${e.cursor}</code>`, e.attempts, time(e.notBefore), time(e.giveUpAt)])}
        empty="Nothing pending." />
    </section>
    <section aria-labelledby="wp-given"><h2 id="wp-given">Given up</h2>
      <${Table} caption="Newest first (last 100 on this node)" head=${['Subscription', 'Cursor', 'Attempts', 'Reason', 'At']}
        rows=${w.givenUp.map((e) => [html`<code>${e.subscription}</code>`, html`<code>${e.cursor}</code>`, e.attempts, e.reason, time(e.at)])}
        empty="Nothing given up." />
    </section>
  `;
}
