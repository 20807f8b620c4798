import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import mqtt from 'mqtt';
import { mqttClient } from './helpers/mqtt.js';
import { spawnServer, startTestServer, tempDir, waitFor, within } from './helpers/server.js';

const OPENSSL = '/usr/bin/openssl';

describe('MQTT listeners', () => {
  const dir = tempDir('omnipush-mqtt-tls-');
  after(() => dir.remove());

  it('serves MQTT over TLS when a certificate and key are configured', { skip: existsSync(OPENSSL) ? false : 'openssl missing' }, async () => {
    const key = join(dir.path, 'key.pem');
    const cert = join(dir.path, 'cert.pem');
    const r = spawnSync(OPENSSL, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', '/CN=localhost', '-days', '1', '-keyout', key, '-out', cert], { stdio: 'pipe' });
    assert.equal(r.status, 0, r.stderr.toString());
    const server = await startTestServer({ mqtt: { tls: { port: 0, cert, key } } });
    try {
      assert.match(server.mqtts ?? '', /^mqtts:\/\/127\.0\.0\.1:\d+$/);
      const secure = await mqtt.connectAsync(server.mqtts!, { ca: readFileSync(cert), servername: 'localhost', rejectUnauthorized: true, reconnectPeriod: 0, protocolVersion: 5 });
      const got: string[] = [];
      secure.on('message', (_t, p) => got.push(p.toString()));
      await secure.subscribeAsync('tls/#', { qos: 1 });
      const plain = await mqttClient(server, { protocolVersion: 4 });
      await plain.publishAsync('tls/t', 'encrypted', { qos: 1 });
      await waitFor(() => got.length === 1, 'delivery over TLS');
      assert.equal(got[0], 'encrypted');
      await Promise.all([secure.endAsync(), plain.endAsync()]);
    } finally {
      await server.close();
    }
  });

  it('speaks MQTT 3.1 (MQIsdp, level 3)', async () => {
    const server = await startTestServer({});
    try {
      const c = await mqttClient(server, { protocolVersion: 3, protocolId: 'MQIsdp', clientId: 'old-client' });
      await c.subscribeAsync('v3/#', { qos: 2 });
      await c.publishAsync('v3/t', 'level three', { qos: 2 });
      await waitFor(() => c.received.length === 1, 'delivery');
      assert.equal(c.received[0].payload, 'level three');
      await c.endAsync();
    } finally {
      await server.close();
    }
  });

  describe('omnipush serve --mqtt-port 0', () => {
    let child: Awaited<ReturnType<typeof spawnServer>>;
    before(async () => {
      child = await spawnServer(['--store', 'memory']);
    });
    after(() => child.stop());

    it('announces the MQTT address in the listening line and in discovery', async () => {
      const doc = (await (await fetch(`${child.http}/.well-known/omnipush`)).json()) as { transports: { mqtt?: { websocket: string; cursorProperty: string; port: number } } };
      assert.equal(doc.transports.mqtt?.cursorProperty, 'omnipush-cursor');
      assert.match(doc.transports.mqtt?.websocket ?? '', /\/mqtt$/);
      const mqttUrl = child.mqtt;
      assert.match(mqttUrl ?? '', /^mqtt:\/\/127\.0\.0\.1:\d+$/);
      assert.equal(doc.transports.mqtt?.port, Number(new URL(mqttUrl!).port), 'discovery tells the port picked');
      const c = await within(mqtt.connectAsync(mqttUrl!, { reconnectPeriod: 0 }), 5000, 'connect');
      await c.endAsync();
    });
  });
});
