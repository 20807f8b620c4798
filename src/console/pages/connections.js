// Connections: find a principal's connections across the cluster, see doors and subscriptions, disconnect.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { get, post } from '../api.js';
import { time } from '../format.js';

export function Connections() {
  const [principal, setPrincipal] = useState('');
  const [result, setResult] = useState(null);
  const [status, setStatus] = useState('');
  const [error, setError] = useState('');
  const load = async (p) => {
    try {
      setResult(await get('connections', { principal: p, limit: 100 }));
      setError('');
    } catch (e) {
      setError(e.message);
    }
  };
  // everyone first (the newest page of it); a search narrows to one principal
  useEffect(() => void load(''), []);
  const search = (e) => {
    e.preventDefault();
    const p = String(new FormData(e.target).get('principal') ?? '').trim();
    setPrincipal(p);
    setStatus('');
    void load(p);
  };
  const unsubscribe = async (c, filter) => {
    try {
      const r = await post('unsubscribe', { principal: c.principal, filter });
      setStatus(r.removed ? `Unsubscribed ${c.principal} from ${filter}.` : `${c.principal}'s ${c.door} connection cannot drop one filter; disconnect it instead.`);
      await load(principal);
    } catch (err) {
      setError(err.message);
    }
  };
  const disconnect = async (e) => {
    e.preventDefault();
    const reason = String(new FormData(e.target).get('reason') ?? '').trim();
    try {
      const r = await post('disconnect', { principal, ...(reason ? { reason } : {}) });
      setStatus(`Disconnected ${r.disconnected} connection${r.disconnected === 1 ? '' : 's'} of ${principal}.`);
      await load(principal);
    } catch (err) {
      setError(err.message);
    }
  };
  return html`
    <h1>Connections</h1>
    <form onSubmit=${search} class="row">
      <label>Principal <input name="principal" id="principal" placeholder="JWT sub or MQTT user; empty: all" /></label>
      <button type="submit">Find</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${status && html`<p class="ok" role="status" id="action-status">${status}</p>`}
    ${result &&
    html`<div class="scroll" tabindex="0"><table id="connections">
        <caption>${result.connections.length} connection${result.connections.length === 1 ? '' : 's'}${principal ? ` of ${principal}` : ''}${result.next ? ' (more not shown)' : ''}</caption>
        <thead><tr><th scope="col">Principal</th><th scope="col">Door</th><th scope="col">Node</th><th scope="col">Address</th><th scope="col">Since</th><th scope="col">Subscriptions</th></tr></thead>
        <tbody>
          ${result.connections.map(
            (c) => html`<tr>
              <td>${c.principal}</td><td>${c.door}</td><td><code>${c.node}</code></td><td>${c.address}</td><td>${time(c.since)}</td>
              <td>
                ${c.subscriptions.map(
                  (s) => html`<span class="chip"><code>${s}</code><button class="x" aria-label=${`Unsubscribe ${c.principal} from ${s}`} title="Unsubscribe" onClick=${() => unsubscribe(c, s)}>×</button></span> `,
                )}
              </td>
            </tr>`,
          )}
        </tbody>
      </table></div>
      ${principal &&
      result.connections.length > 0 &&
      html`<form onSubmit=${disconnect} class="row card">
        <label>Reason shown to the client <input name="reason" maxlength="200" placeholder="disconnected by an operator" /></label>
        <button type="submit" class="danger">Disconnect ${principal} everywhere</button>
      </form>`}`}
  `;
}
