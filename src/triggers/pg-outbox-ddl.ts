/**
 * The outbox table Omnipush creates when it is missing (docs/triggers.md shows the same), with a
 * statement-level trigger that NOTIFYs `channel` on insert: one wake-up per insert statement, not
 * per row. `table` and `channel` are identifiers checked by the config schema.
 */
export function outboxDdl(table: string, channel: string): string {
  const name = table.includes('.') ? table.slice(table.indexOf('.') + 1) : table;
  const fn = `${table}_notify`;
  return `
CREATE TABLE IF NOT EXISTS ${table} (
  id              bigserial PRIMARY KEY,
  topic           text NOT NULL,
  payload         text,
  event           text,
  content_type    text,
  properties      jsonb,
  retain          boolean NOT NULL DEFAULT false,
  ttl             double precision,
  idempotency_key text,
  created_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE OR REPLACE FUNCTION ${fn}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('${channel}', '');
  RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER ${name}_notify AFTER INSERT ON ${table}
  FOR EACH STATEMENT EXECUTE FUNCTION ${fn}();
`;
}
