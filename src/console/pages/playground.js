// Playground: subscribe over a chosen door (the client SDK's doors, or MQTT over WebSocket with
// MQTT.js), publish through the server API or over MQTT, read history. It replaces the old demo page.
import { html } from 'htm/preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import { connect } from '../../client/index.ts';
import { get, post } from '../api.js';

const DOORS = [
  ['websocket', 'WebSocket'],
  ['sse', 'Server-Sent Events'],
  ['longpoll', 'Long-poll'],
];
const MQTT_DOOR = ['mqtt', 'MQTT over WebSocket'];

// MQTT.js is loaded (a separate chunk) the first time the MQTT door is used
const loadMqtt = () => import('../mqtt-door.js');

/** Subscribes over MQTT; `handle.close` ends it, and state reports stop once it is replaced. */
async function subscribeMqtt(url, token, filter, handle, isCurrent, setState, log) {
  const { openMqtt } = await loadMqtt();
  const m = await openMqtt(url, token, (s) => isCurrent() && setState(`${s} (mqtt)`));
  handle.close = () => m.end(true);
  if (!isCurrent()) return handle.close();
  m.on('message', (topic, payload) => log(`mqtt ← ${topic}: ${payload.toString()}`));
  const [grant] = await m.subscribeAsync(filter, { qos: 1 });
  // MQTT 5 SUBACK puts the refusal's reason code where the granted QoS would be
  if (grant.qos >= 0x80) {
    setState('refused');
    log(`subscription to ${filter} over mqtt refused: reason code 0x${grant.qos.toString(16)}`);
    return handle.close();
  }
  setState('open over mqtt');
  log(`subscribed to ${filter} over mqtt`);
}

function Subscriber({ log, token, mqttInfo }) {
  const client = useRef(null);
  const [state, setState] = useState('not connected');
  useEffect(() => () => client.current?.close(), []);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const door = f.get('door');
    const filter = f.get('filter');
    client.current?.close();
    setState('connecting');
    if (door === 'mqtt') {
      const handle = { close() {} };
      client.current = handle;
      try {
        await subscribeMqtt(mqttInfo.websocket, token, filter, handle, () => client.current === handle, setState, log);
      } catch (err) {
        if (client.current === handle) setState('failed');
        log(`could not subscribe over mqtt: ${err.message}`);
      }
      return;
    }
    try {
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
    <label>Door <select name="door" id="pg-door">${[...DOORS, ...(mqttInfo?.websocket ? [MQTT_DOOR] : [])].map(([v, l]) => html`<option value=${v}>${l}</option>`)}</select></label>
    <label>Topic filter <input name="filter" value="demo/#" required /></label>
    <button type="submit">Subscribe</button>
    <p class="muted" role="status">State: <span id="pg-state">${state}</span></p>
    ${mqttInfo?.port && html`<p class="muted">From a shell: <code>mosquitto_sub -h ${location.hostname} -p ${mqttInfo.port} -t 'demo/#' -V mqttv5</code></p>`}
  </form>`;
}

/** Publishes each topic over one MQTT connection, kept open while the token stays the same. */
async function publishMqtt(conn, url, token, topics, data, retain, log) {
  if (conn.current && (conn.current.token !== token || !conn.current.client.connected)) {
    conn.current.client.end(true);
    conn.current = null;
  }
  if (!conn.current) {
    const { openMqtt } = await loadMqtt();
    const entry = { client: null, token };
    // a connection replaced on purpose ends quietly
    entry.client = await openMqtt(url, token, (s) => conn.current === entry && log(`mqtt publisher: ${s}`));
    conn.current = entry;
  }
  for (const topic of topics) {
    await conn.current.client.publishAsync(topic, data, { qos: 1, retain });
    log(`published to ${topic} over mqtt (PUBACK)`);
  }
}

function Publisher({ log, token, mqttInfo }) {
  const mqttConn = useRef(null);
  useEffect(() => () => mqttConn.current?.client.end(true), []);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    const topics = String(f.get('topics'))
      .split(',')
      .map((t) => t.trim())
      .filter(Boolean);
    const data = String(f.get('data') ?? '');
    const retain = f.get('retain') === 'on';
    try {
      if (f.get('via') === 'mqtt') {
        await publishMqtt(mqttConn, mqttInfo.websocket, token, topics, data, retain, log);
        return;
      }
      const r = await post('publish', { topics, data, retain });
      for (const m of r.messages) log(`published to ${m.topic} at ${m.cursor}`);
    } catch (err) {
      log(`publish failed: ${err.message}`);
    }
  };
  return html`<form onSubmit=${submit} class="card stack" aria-labelledby="pg-pub">
    <h2 id="pg-pub">Publish</h2>
    <label
      >Publish through
      <select name="via" id="pg-via">
        <option value="api">Server API</option>
        ${mqttInfo?.websocket && html`<option value="mqtt">MQTT over WebSocket</option>`}
      </select></label
    >
    <p class="muted">The server API publishes as the console; MQTT as the client token, or anonymously.</p>
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
  const [token, setToken] = useState('');
  const [mqttInfo, setMqttInfo] = useState(null);
  useEffect(() => {
    fetch('/.well-known/omnipush')
      .then((r) => r.json())
      .then((d) => setMqttInfo(d.transports?.mqtt ?? null))
      .catch(() => undefined);
  }, []);
  const log = (t) => setLines((l) => [...l, t].slice(-200));
  return html`
    <h1>Playground</h1>
    <div class="card row">
      <label
        >Client token (optional)
        <input id="pg-token" autocomplete="off" placeholder="JWT, when anonymous access is off" value=${token} onInput=${(e) => setToken(e.target.value.trim())}
      /></label>
      <p class="muted">Used by the subscribing doors, and as the password of MQTT connections.</p>
    </div>
    <div class="grid">
      <${Subscriber} log=${log} token=${token} mqttInfo=${mqttInfo} />
      <${Publisher} log=${log} token=${token} mqttInfo=${mqttInfo} />
      <${History} log=${log} />
    </div>
    <h2 id="pg-log-h">Log</h2>
    <pre id="pg-log" class="log" role="log" aria-labelledby="pg-log-h" tabindex="0">${lines.join('\n')}</pre>
  `;
}
