import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type pg from 'pg';
import type { RunningServer } from '../src/server.js';
import { postgresMissing, startPostgres, type PostgresServer } from './helpers/postgres.js';
import { spawnServer, startTestServer, tempDir, waitFor } from './helpers/server.js';
import { openRawSse } from './helpers/sse.js';

interface HistoryPage {
  messages: Array<{ cursor: string; topic: string; data: string; event?: string }>;
  cursor: string;
  more: boolean;
}

/** Every stored message on topics matching `filter`, oldest first. */
async function allHistory(base: string, filter: string): Promise<HistoryPage['messages']> {
  const out: HistoryPage['messages'] = [];
  let since = 'all';
  for (;;) {
    const h = (await (await fetch(`${base}/v1/history?topic=${encodeURIComponent(filter)}&since=${since}&limit=1000`)).json()) as HistoryPage;
    out.push(...h.messages);
    since = h.cursor;
    if (!h.more) return out;
  }
}

async function rowsLeft(db: pg.Client, table: string): Promise<number> {
  return Number((await db.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
}

describe('PostgreSQL outbox', { skip: postgresMissing || undefined }, () => {
  let pgs: PostgresServer;
  let db: pg.Client;
  before(async () => {
    pgs = await startPostgres();
    db = await pgs.client();
  });
  after(async () => {
    await db?.end();
    await pgs?.remove();
  });

  it('an inserted row reaches an SSE subscriber, woken by NOTIFY long before the next poll', async () => {
    // a 60 s poll: only LISTEN/NOTIFY can deliver within the deadline below
    const server = await startTestServer({ triggers: { postgres: { url: pgs.url, table: 'outbox_a', channel: 'outbox_a', pollInterval: 60 } } });
    try {
      await waitFor(async () => (await db.query("SELECT to_regclass('outbox_a') AS t")).rows[0].t, 'the outbox table created on start');
      const sse = await openRawSse(`${server.http}/v1/sse?topic=orders/%2B`);
      const t0 = Date.now();
      await db.query('BEGIN');
      await db.query("INSERT INTO outbox_a (topic, payload, event, properties) VALUES ('orders/42', '{\"total\":12}', 'created', '{\"source\":\"db\"}')");
      // not before the commit
      await new Promise((r) => setImmediate(r));
      await db.query('COMMIT');
      const ev = await waitFor(() => sse.events().find((e) => e.event === 'created'), 'the row as an SSE event', 5_000);
      const ms = Date.now() - t0;
      sse.close();
      assert.equal(ev.data, '{"total":12}');
      assert.ok(ms < 5_000, `delivered after ${ms} ms`);
      await waitFor(async () => (await rowsLeft(db, 'outbox_a')) === 0, 'the row deleted after publishing');
      const h = await allHistory(server.http, 'orders/#');
      assert.equal(h.length, 1);
    } finally {
      await server.close();
    }
  });

  it('a rolled-back insert is never published', async () => {
    const server = await startTestServer({ triggers: { postgres: { url: pgs.url, table: 'outbox_rb', channel: 'outbox_rb', pollInterval: 0.1 } } });
    try {
      await waitFor(async () => (await db.query("SELECT to_regclass('outbox_rb') AS t")).rows[0].t, 'table');
      await db.query('BEGIN');
      await db.query("INSERT INTO outbox_rb (topic, payload) VALUES ('rb/x', 'never')");
      await db.query('ROLLBACK');
      await db.query("INSERT INTO outbox_rb (topic, payload) VALUES ('rb/x', 'committed')");
      await waitFor(async () => (await allHistory(server.http, 'rb/#')).length > 0, 'the committed row');
      // polls run every 100 ms: by now several polls saw the table
      await waitFor(async () => (await rowsLeft(db, 'outbox_rb')) === 0, 'table drained');
      assert.deepEqual(
        (await allHistory(server.http, 'rb/#')).map((m) => m.data),
        ['committed'],
      );
    } finally {
      await server.close();
    }
  });

  it('polls when no NOTIFY comes (a table without the trigger)', async () => {
    await db.query('CREATE TABLE outbox_poll (id bigserial PRIMARY KEY, topic text NOT NULL, payload text, event text, content_type text, properties jsonb, retain boolean NOT NULL DEFAULT false, ttl double precision, idempotency_key text, created_at timestamptz NOT NULL DEFAULT now())');
    const server = await startTestServer({ triggers: { postgres: { url: pgs.url, table: 'outbox_poll', channel: 'outbox_poll', createTable: false, pollInterval: 0.2 } } });
    try {
      await db.query("INSERT INTO outbox_poll (topic, payload) SELECT 'poll/' || g, 'p' || g FROM generate_series(1, 5) g");
      await waitFor(async () => (await allHistory(server.http, 'poll/#')).length === 5, 'five rows published by polling');
      await waitFor(async () => (await rowsLeft(db, 'outbox_poll')) === 0, 'table drained');
      assert.deepEqual(
        (await allHistory(server.http, 'poll/#')).map((m) => m.data),
        ['p1', 'p2', 'p3', 'p4', 'p5'],
        'published in insert order',
      );
    } finally {
      await server.close();
    }
  });

  it('two servers on one table publish each row once', async () => {
    const cfg = { triggers: { postgres: { url: pgs.url, table: 'outbox_two', channel: 'outbox_two', pollInterval: 0.2, batchSize: 20 } } };
    const servers: RunningServer[] = [await startTestServer(cfg), await startTestServer(cfg)];
    try {
      const N = 1000;
      for (let i = 0; i < N; i += 50) {
        await db.query("INSERT INTO outbox_two (topic, payload) SELECT 'two/' || (g % 10), 'r' || g FROM generate_series($1::int, $2::int) g", [i, i + 49]);
      }
      await waitFor(async () => (await rowsLeft(db, 'outbox_two')) === 0, 'table drained', 30_000);
      const seen = new Map<string, number>();
      for (const s of servers) for (const m of await allHistory(s.http, 'two/#')) seen.set(m.data, (seen.get(m.data) ?? 0) + 1);
      assert.equal(seen.size, N, 'every row published');
      const twice = [...seen].filter(([, n]) => n > 1);
      assert.equal(twice.length, 0, `published more than once: ${JSON.stringify(twice.slice(0, 5))}`);
    } finally {
      await Promise.all(servers.map((s) => s.close()));
    }
  });

  it('the row idempotency key makes a re-inserted row a repeat', async () => {
    const server = await startTestServer({ triggers: { postgres: { url: pgs.url, table: 'outbox_key', channel: 'outbox_key', pollInterval: 0.1 } } });
    try {
      await waitFor(async () => (await db.query("SELECT to_regclass('outbox_key') AS t")).rows[0].t, 'table');
      await db.query("INSERT INTO outbox_key (topic, payload, idempotency_key) VALUES ('key/x', 'first', 'order-7')");
      await waitFor(async () => (await allHistory(server.http, 'key/#')).length === 1, 'first row');
      await db.query("INSERT INTO outbox_key (topic, payload, idempotency_key) VALUES ('key/x', 'again', 'order-7'), ('key/x', 'other', 'order-8')");
      await waitFor(async () => (await rowsLeft(db, 'outbox_key')) === 0, 'table drained');
      assert.deepEqual(
        (await allHistory(server.http, 'key/#')).map((m) => m.data),
        ['first', 'other'],
      );
    } finally {
      await server.close();
    }
  });

  it('a batch whose DELETE fails after publishing is taken again and stored once', async () => {
    const server = await startTestServer({ triggers: { postgres: { url: pgs.url, table: 'outbox_fail', channel: 'outbox_fail', pollInterval: 0.2 } } });
    try {
      await waitFor(async () => (await db.query("SELECT to_regclass('outbox_fail') AS t")).rows[0].t, 'table');
      // the first two DELETEs fail (a sequence is outside the rolled-back transaction): the
      // rows are published, then the transaction rolls back, as a crash before COMMIT would
      await db.query('CREATE SEQUENCE outbox_fail_seq');
      await db.query(`CREATE FUNCTION outbox_fail_del() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN IF nextval('outbox_fail_seq') <= 2 THEN RAISE EXCEPTION 'injected failure'; END IF; RETURN OLD; END $$`);
      await db.query('CREATE TRIGGER outbox_fail_del BEFORE DELETE ON outbox_fail FOR EACH STATEMENT EXECUTE FUNCTION outbox_fail_del()');
      await db.query("INSERT INTO outbox_fail (topic, payload) SELECT 'fail/x', 'f' || g FROM generate_series(1, 20) g");
      await waitFor(async () => (await rowsLeft(db, 'outbox_fail')) === 0, 'table drained after the failures', 20_000);
      assert.ok(Number((await db.query('SELECT last_value FROM outbox_fail_seq')).rows[0].last_value) >= 3, 'the DELETE failed twice first');
      const data = (await allHistory(server.http, 'fail/#')).map((m) => m.data);
      assert.deepEqual(
        data,
        Array.from({ length: 20 }, (_, i) => `f${i + 1}`),
      );
    } finally {
      await server.close();
    }
  });

  it('reconnects when PostgreSQL goes away and comes back', async () => {
    const server = await startTestServer({ triggers: { postgres: { url: pgs.url, table: 'outbox_re', channel: 'outbox_re', pollInterval: 30 } } });
    try {
      await waitFor(async () => (await db.query("SELECT to_regclass('outbox_re') AS t")).rows[0].t, 'table');
      await db.query("INSERT INTO outbox_re (topic, payload) VALUES ('re/x', 'before')");
      await waitFor(async () => (await allHistory(server.http, 're/#')).length === 1, 'the row before the outage');
      await db.end();
      await pgs.stop();
      await pgs.start();
      db = await pgs.client();
      // the 30 s poll is far off: this arrives through the re-established LISTEN (or the drain on reconnect)
      await db.query("INSERT INTO outbox_re (topic, payload) VALUES ('re/x', 'after')");
      await waitFor(async () => (await allHistory(server.http, 're/#')).length === 2, 'the row after PostgreSQL came back', 20_000);
      assert.deepEqual(
        (await allHistory(server.http, 're/#')).map((m) => m.data),
        ['before', 'after'],
      );
    } finally {
      await server.close();
    }
  });

  it('kill -9 while rows flow: after a restart every row is in history exactly once', async () => {
    const dir = tempDir('omnipush-outbox-kill-');
    const config = join(dir.path, 'config.json');
    writeFileSync(config, JSON.stringify({ triggers: { postgres: { url: pgs.url, table: 'outbox_kill', channel: 'outbox_kill', pollInterval: 0.2, batchSize: 25 } } }));
    const args = ['--store', 'sqlite', '--data', dir.path, '--config', config, '--log-level', 'warn'];
    try {
      const first = await spawnServer(args);
      await waitFor(async () => (await db.query("SELECT to_regclass('outbox_kill') AS t")).rows[0].t, 'table');
      let inserted = 0;
      let stop = false;
      const writer = (async () => {
        while (!stop) {
          await db.query("INSERT INTO outbox_kill (topic, payload) SELECT 'kill/' || (g % 50), 'k' || g FROM generate_series($1::int, $2::int) g", [inserted, inserted + 9]);
          inserted += 10;
        }
      })();
      await waitFor(async () => (await allHistory(first.http, 'kill/#')).length >= 1000, '1000 rows published before the kill', 60_000);
      await first.kill();
      stop = true;
      await writer;
      assert.ok((await rowsLeft(db, 'outbox_kill')) > 0, 'rows were still waiting at the kill');

      const second = await spawnServer(args);
      try {
        await waitFor(async () => (await rowsLeft(db, 'outbox_kill')) === 0, 'table drained after the restart', 60_000);
        const counts = new Map<string, number>();
        for (const m of await allHistory(second.http, 'kill/#')) counts.set(m.data, (counts.get(m.data) ?? 0) + 1);
        const missing: number[] = [];
        for (let i = 0; i < inserted; i++) if (!counts.has(`k${i}`)) missing.push(i);
        assert.equal(missing.length, 0, `rows lost: ${missing.slice(0, 10).join(',')}`);
        const twice = [...counts].filter(([, n]) => n > 1);
        assert.equal(twice.length, 0, `rows stored twice: ${JSON.stringify(twice.slice(0, 5))}`);
        assert.equal(counts.size, inserted);
      } finally {
        await second.stop();
      }
    } finally {
      dir.remove();
    }
  });
});
