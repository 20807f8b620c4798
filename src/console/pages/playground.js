// Playground: subscribe over a chosen door with the client SDK, publish through the server API,
// read history. It replaces the old demo page.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { connect } from '../../client/index.ts';
import { get, post } from '../api.js';

const DOORS = [
  ['websocket', 'WebSocket'],
  ['sse', 'Server-Sent Events'],
  ['longpoll', 'Long-poll'],
];

function Subscriber({ log }) {
  const client = useRef(null);
  const [state, setState] = useState('not connected');
  const [mqttPort, setMqttPort] = useState(null);
  useEffect(() => {
    fetch('/.well-known/omnipush')
      .then((r) => r.json())
      .then((d) => setMqttPort(d.transports?.mqtt?.port ?? null))
      .catch(() => undefined);
    return () => client.current?.close();
  }, []);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const door = f.get('door');
    const filter = f.get('filter');
    client.current?.close();
    setState('connecting');
    try {
      const token = String(f.get('token') ?? '').trim();
      const c = await connect(location.origin, { transports: [door], ...(token ? { token } : {}) });
      client.current = c;
      c.on('state', (s) => setState(`${s.state} over ${s.transport ?? door}`));
      setState(`${c.state} over ${c.transport ?? door}`);
      c.subscribe(filter, (m) => log(`${door} ← ${m.topic}: ${m.data ?? '[binary]'}`));
      log(`subscribed to ${filter} over ${door}`);
    } catch (err) {
      setState('failed');
      log(`could not connect over ${door}: ${err.message}`);
    }
  };
  return html`<form onSubmit=${submit} class="card stack" aria-labelledby="pg-sub">
    <h2 id="pg-sub">Subscribe</h2>
    <label>Door <select name="door">${DOORS.map(([v, l]) => html`<option value=${v}>${l}</option>`)}</select></label>
    <label>Topic filter <input name="filter" value="demo/#" required /></label>
    <label>Client token (optional) <input name="token" autocomplete="off" placeholder="JWT, when anonymous access is off" /></label>
    <button type="submit">Subscribe</button>
    <p class="muted" role="status">State: <span id="pg-state">${state}</span></p>
    ${mqttPort && html`<p class="muted">MQTT: <code>mosquitto_sub -h ${location.hostname} -p ${mqttPort} -t 'demo/#' -V mqttv5</code></p>`}
  </form>`;
}

function Publisher({ log }) {
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const topics = String(f.get('topics'))
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    try {
      const r = await post('publish', { topics, data: f.get('data'), retain: f.get('retain') === 'on' });
      for (const m of r.messages) log(`published to ${m.topic} at ${m.cursor}`);
    } catch (err) {
      log(`publish failed: ${err.message}`);
    }
  };
  return html`<form onSubmit=${submit} class="card stack" aria-labelledby="pg-pub">
    <h2 id="pg-pub">Publish</h2>
    <label>Topics (comma-separated) <input name="topics" id="pg-topics" value="demo/hello" required /></label>
    <label>Message <input name="data" id="pg-data" value="hello" /></label>
    <label class="check"><input type="checkbox" name="retain" /> Retain</label>
    <button type="submit" id="pg-publish">Publish</button>
  </form>`;
}

function History({ log }) {
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    try {
      const r = await get('history', { topic: f.get('topic'), since: 'all', limit: 20 });
      log(`history of ${f.get('topic')}: ${r.messages.length} message(s)${r.more ? ', more after ' + r.cursor : ''}`);
      for (const m of r.messages) log(`  ${m.cursor} ${m.topic}: ${m.data ?? '[binary]'}`);
    } catch (err) {
      log(`history failed: ${err.message}`);
    }
  };
  return html`<form onSubmit=${submit} class="card stack" aria-labelledby="pg-hist">
    <h2 id="pg-hist">Read history</h2>
    <label>Topic or filter <input name="topic" value="demo/#" required /></label>
    <button type="submit">Read</button>
  </form>`;
}

export function Playground() {
  const [lines, setLines] = useState([]);
  const log = (t) => setLines((l) => [...l, t].slice(-200));
  return html`
    <h1>Playground</h1>
    <div class="grid">
      <${Subscriber} log=${log} />
      <${Publisher} log=${log} />
      <${History} log=${log} />
    </div>
    <h2 id="pg-log-h">Log</h2>
    <pre id="pg-log" class="log" role="log" aria-labelledby="pg-log-h" tabindex="0">${lines.join('\n')}</pre>
  `;
}
