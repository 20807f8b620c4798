// Topics: subscribed filters with their subscriber counts (paged), and a history browser with cursors.
import { html } from 'htm/preact';
import { useEffect, useState } from 'preact/hooks';
import { get } from '../api.js';
import { num, time } from '../format.js';

function TopicList() {
  const [prefix, setPrefix] = useState('');
  const [pages, setPages] = useState(['']);
  const [result, setResult] = useState(null);
  const [error, setError] = useState('');
  const after = pages[pages.length - 1];
  useEffect(() => {
    get('topics', { prefix, after, limit: 50 })
      .then((r) => {
        setResult(r);
        setError('');
      })
      .catch((e) => setError(e.message));
  }, [prefix, after]);
  const search = (e) => {
    e.preventDefault();
    setPrefix(new FormData(e.target).get('prefix'));
    setPages(['']);
  };
  return html`<section aria-labelledby="topics-h">
    <h2 id="topics-h">Active topics</h2>
    <form onSubmit=${search} class="row">
      <label>Filter starts with <input name="prefix" value=${prefix} placeholder="e.g. chat/" /></label>
      <button type="submit">Search</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${result &&
    html`<div class="scroll" tabindex="0"><table>
        <thead><tr><th scope="col">Filter</th><th scope="col" class="num">Subscribers (cluster)</th></tr></thead>
        <tbody>
          ${result.topics.length === 0 && html`<tr><td colspan="2">No subscriptions${prefix ? ` under ${prefix}` : ''}.</td></tr>`}
          ${result.topics.map((t) => html`<tr><td><code>${t.filter}</code></td><td class="num">${num(t.subscribers)}</td></tr>`)}
        </tbody>
      </table></div>
      <div class="row">
        <button disabled=${pages.length < 2} onClick=${() => setPages(pages.slice(0, -1))}>Previous page</button>
        <button disabled=${!result.next} onClick=${() => setPages([...pages, result.next])}>Next page</button>
      </div>`}
  </section>`;
}

function HistoryBrowser() {
  const [query, setQuery] = useState(null);
  const [result, setResult] = useState(null);
  const [error, setError] = useState('');
  useEffect(() => {
    if (!query) return;
    get('history', { topic: query.topic, since: query.since, limit: 25 })
      .then((r) => {
        setResult(r);
        setError('');
      })
      .catch((e) => setError(e.message));
  }, [query]);
  const submit = (e) => {
    e.preventDefault();
    const f = new FormData(e.target);
    setQuery({ topic: f.get('topic'), since: f.get('since') || 'all' });
  };
  return html`<section aria-labelledby="history-h">
    <h2 id="history-h">History</h2>
    <form onSubmit=${submit} class="row">
      <label>Topic or filter <input name="topic" required placeholder="e.g. chat/#" /></label>
      <label>After cursor <input name="since" placeholder="all" /></label>
      <button type="submit">Read</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${result &&
    html`${result.gap && html`<p class="warn">Some history after this cursor was pruned (gap).</p>`}
      <div class="scroll" tabindex="0"><table>
        <thead><tr><th scope="col">Cursor</th><th scope="col">Topic</th><th scope="col">Data</th><th scope="col">Published</th><th scope="col">Retained</th></tr></thead>
        <tbody>
          ${result.messages.length === 0 && html`<tr><td colspan="5">No messages.</td></tr>`}
          ${result.messages.map(
            (m) => html`<tr><td><code>${m.cursor}</code></td><td><code>${m.topic}</code></td><td class="data">${m.data ?? `[${m.data_base64?.length ?? 0} base64 chars]`}</td><td>${time(m.publishedAt)}</td><td>${m.retain ? 'yes' : ''}</td></tr>`,
          )}
        </tbody>
      </table></div>
      <div class="row">
        <button disabled=${!result.more} onClick=${() => setQuery({ ...query, since: result.cursor })}>Next messages</button>
        <span class="muted">Next cursor: <code>${result.cursor}</code></span>
      </div>`}
  </section>`;
}

function Retained() {
  const [result, setResult] = useState(null);
  const [error, setError] = useState('');
  const submit = async (e) => {
    e.preventDefault();
    try {
      setResult(await get('retained', { topic: new FormData(e.target).get('topic'), limit: 100 }));
      setError('');
    } catch (err) {
      setError(err.message);
    }
  };
  return html`<section aria-labelledby="retained-h">
    <h2 id="retained-h">Retained messages</h2>
    <form onSubmit=${submit} class="row">
      <label>Topic or filter <input name="topic" required placeholder="e.g. status/+" /></label>
      <button type="submit">Show</button>
    </form>
    ${error && html`<p class="error" role="alert">${error}</p>`}
    ${result &&
    html`<div class="scroll" tabindex="0"><table id="retained">
      <caption>${result.messages.length} retained message${result.messages.length === 1 ? '' : 's'} (first 100)</caption>
      <thead><tr><th scope="col">Topic</th><th scope="col">Data</th><th scope="col">Published</th><th scope="col">Cursor</th></tr></thead>
      <tbody>
        ${result.messages.map((m) => html`<tr><td><code>${m.topic}</code></td><td class="data">${m.data ?? `[${m.data_base64?.length ?? 0} base64 chars]`}</td><td>${time(m.publishedAt)}</td><td><code>${m.cursor}</code></td></tr>`)}
      </tbody>
    </table></div>`}
  </section>`;
}

export function Topics() {
  return html`<h1>Topics</h1><${TopicList} /><${Retained} /><${HistoryBrowser} />`;
}
