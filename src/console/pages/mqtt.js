// MQTT sessions: persistent sessions in the store, connected or waiting out their expiry.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { get } from '../api.js';
import { time } from '../format.js';

export function MqttSessions() {
  const [prefix, setPrefix] = useState('');
  const [result, setResult] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    get('mqtt/sessions', { prefix, limit: 100 })
      .then((r) => {
        setResult(r);
        setError('');
      })
      .catch((e) => setError(e.message));
  }, [prefix]);
  return html`
    <h1>MQTT sessions</h1>
    <form class="row" onSubmit=${(e) => (e.preventDefault(), setPrefix(new FormData(e.target).get('prefix')))}>
      <label>Client id starts with <input name="prefix" /></label>
      <button type="submit">Search</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${result &&
    html`<div class="scroll" tabindex="0"><table>
      <caption>${result.sessions.length} session${result.sessions.length === 1 ? '' : 's'}${result.more ? ' (more not shown: narrow the search)' : ''}</caption>
      <thead><tr><th scope="col">Client id</th><th scope="col">State</th><th scope="col">Node</th><th scope="col">Expiry (s)</th><th scope="col">In flight</th><th scope="col">Subscriptions</th></tr></thead>
      <tbody>
        ${result.sessions.length === 0 && html`<tr><td colspan="6">No persistent sessions.</td></tr>`}
        ${result.sessions.map(
          (s) => html`<tr>
            <td><code>${s.clientId}</code></td>
            <td>${s.error ?? (s.connected ? 'connected' : `offline since ${time(s.disconnectedAt)}`)}</td>
            <td><code>${s.node ?? ''}</code></td><td class="num">${s.expiry ?? ''}</td><td class="num">${s.inflight ?? ''}</td>
            <td>${(s.subscriptions ?? []).map((f) => html`<code class="chip">${f}</code> `)}</td>
          </tr>`,
        )}
      </tbody>
    </table></div>`}
  `;
}
