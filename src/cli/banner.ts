import type { Config } from '../config/schema.js';
import type { RunningServer } from '../server.js';
import { VERSION } from '../version.js';

/** The console is on once an API key or a console user is configured (the `admin` section). */
function consoleOn(config: Config): boolean {
  return config.admin.apiKeys.length > 0 || config.admin.users.length > 0;
}

/**
 * The plain-text lines `omnipush serve` prints first: where each door listens, so a person can
 * copy a URL without reading JSON logs.
 */
export function bannerLines(server: Pick<RunningServer, 'http' | 'mqtt' | 'mqtts'>, config: Config): string[] {
  const http = server.http;
  const ws = http.replace(/^http/, 'ws');
  const rows: Array<[string, string]> = [
    ['HTTP', `${http}  (publish: POST ${http}/v1/publish)`],
    ['SSE', `${http}/v1/sse?topic=<filter>`],
    ['WebSocket', `${ws}/v1/ws`],
    ['Long-poll', `${http}/v1/poll?topic=<filter>`],
  ];
  if (server.mqtt) rows.push(['MQTT', server.mqtt]);
  if (server.mqtts) rows.push(['MQTT TLS', server.mqtts]);
  if (config.mqtt.enabled && config.mqtt.wsPath) rows.push(['MQTT/WS', `${ws}${config.mqtt.wsPath}`]);
  if (config.webpush.subject) rows.push(['Web Push', `${http}/v1/webpush/`]);
  if (consoleOn(config)) rows.push(['Console', `${http}/admin`]);
  rows.push(['Metrics', `${http}/metrics`]);
  const store = config.store.kind === 'sqlite' ? `sqlite (${config.store.dir})` : config.store.kind;
  return [`omnipush ${VERSION} listening; store ${store}, bus ${config.bus.kind}`, ...rows.map(([k, v]) => `  ${k.padEnd(10)} ${v}`)];
}
