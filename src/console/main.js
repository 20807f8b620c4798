// The operator's console: a login, then one page per concern, chosen by the URL's hash.
import { html, render } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { get, post, setCsrf } from './api.js';
import { Connections } from './pages/connections.js';
import { MqttSessions } from './pages/mqtt.js';
import { Overview } from './pages/overview.js';
import { Playground } from './pages/playground.js';
import { Topics } from './pages/topics.js';
import { WebPush } from './pages/webpush.js';

const PAGES = [
  ['overview', 'Overview', Overview],
  ['topics', 'Topics', Topics],
  ['connections', 'Connections', Connections],
  ['mqtt', 'MQTT sessions', MqttSessions],
  ['webpush', 'Web Push', WebPush],
  ['playground', 'Playground', Playground],
];

const pageOfHash = () => {
  const h = location.hash.replace(/^#/, '');
  return PAGES.some((p) => p[0] === h) ? h : 'overview';
};

function Login({ onDone }) {
  const [error, setError] = useState('');
  const [busy, setBusy] = useState(false);
  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    setBusy(true);
    setError('');
    try {
      const s = await post('login', { username: f.get('username'), password: f.get('password') });
      onDone(s);
    } catch (err) {
      setError(err.message);
    } finally {
      setBusy(false);
    }
  };
  return html`<main class="login" id="main">
    <h1>Omnipush console</h1>
    <form onSubmit=${submit} class="card stack">
      <label>Username <input name="username" autocomplete="username" required /></label>
      <label>Password <input name="password" type="password" autocomplete="current-password" required /></label>
      <button type="submit" disabled=${busy}>Log in</button>
      ${error && html`<p class="error" role="alert">${error}</p>`}
    </form>
  </main>`;
}

function App() {
  const [session, setSession] = useState(undefined);
  const [page, setPage] = useState(pageOfHash());
  useEffect(() => {
    get('session')
      .then((s) => {
        setCsrf(s.csrf);
        setSession(s);
      })
      .catch(() => setSession(null));
    const onHash = () => setPage(pageOfHash());
    addEventListener('hashchange', onHash);
    return () => removeEventListener('hashchange', onHash);
  }, []);
  useEffect(() => {
    const p = PAGES.find((x) => x[0] === page);
    document.title = `${p[1]} · Omnipush console`;
  }, [page]);
  if (session === undefined) return html`<main id="main"><p>Loading…</p></main>`;
  if (session === null) {
    return html`<${Login} onDone=${(s) => {
      setCsrf(s.csrf);
      setSession(s);
    }} />`;
  }
  const logout = async () => {
    await post('logout').catch(() => undefined);
    setCsrf('');
    setSession(null);
  };
  const Page = PAGES.find((p) => p[0] === page)[2];
  return html`
    <header class="top">
      <span class="brand">Omnipush</span>
      <nav aria-label="Console pages">
        <ul>
          ${PAGES.map(([id, label]) => html`<li><a href=${`#${id}`} aria-current=${id === page ? 'page' : undefined}>${label}</a></li>`)}
        </ul>
      </nav>
      <span class="who">${session.who} <button class="link" onClick=${logout}>Log out</button></span>
    </header>
    <main id="main"><${Page} /></main>
  `;
}

render(html`<${App} />`, document.getElementById('app'));
