// The playground's MQTT door: MQTT.js over the server's MQTT-over-WebSocket path. It is its own
// chunk, imported only when the MQTT door is chosen, because MQTT.js is most of the console's weight.
import mqtt from 'mqtt';

/**
 * Opens an MQTT 5 connection to `url` (the discovery document's `transports.mqtt.websocket`).
 * The client token, when given, is the MQTT password, as the server reads a JWT there.
 * Resolves once CONNACK accepts; rejects with the server's reason otherwise.
 */
export function openMqtt(url, token, onState) {
  const client = mqtt.connect(url, {
    protocolVersion: 5,
    // a playground connection is for watching now, not a persistent session left in the store
    clean: true,
    // a refused or dropped connection shows as such; retrying in a loop would hide the reason
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    wsOptions: { protocol: 'mqtt' },
    // MQTT.js would otherwise run its keepalive timer in a blob: worker, which the console's CSP
    // forbids; a long-hidden tab's throttled timers may then miss a ping, and the state says closed
    timerVariant: 'native',
    // MQTT.js sends no password without a user name; an empty one can never name a static user
    // (their names are not empty), so the server reads the password as a JWT
    ...(token ? { username: '', password: token } : {}),
  });
  return new Promise((resolve, reject) => {
    const refused = (err) => {
      client.end(true);
      reject(err);
    };
    client.once('error', refused);
    client.once('connect', () => {
      client.off('error', refused);
      client.on('error', (err) => onState(`error: ${err.message}`));
      client.on('close', () => onState('closed'));
      resolve(client);
    });
    client.once('close', () => refused(new Error('the server closed the connection before CONNACK')));
  });
}
