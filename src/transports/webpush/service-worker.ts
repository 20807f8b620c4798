/**
 * The service worker served at `/v1/webpush/sw.js`. A site on another origin cannot register it
 * directly (a worker must be same-origin with its page): it serves its own worker file that
 * `importScripts()` this one (docs/webpush.md). Plain ES2017, no build step, no dependencies.
 */
export const SERVICE_WORKER_JS = `/* Omnipush Web Push service worker */
'use strict';
(function () {
  function text(v, max) {
    return typeof v === 'string' ? (v.length > max ? v.slice(0, max - 1) + '\\u2026' : v) : undefined;
  }
  self.addEventListener('push', function (event) {
    var msg;
    try {
      msg = event.data ? event.data.json() : null;
    } catch (e) {
      msg = null;
    }
    if (!msg || typeof msg !== 'object') msg = { body: event.data ? event.data.text() : '' };
    var title = text(msg.title, 200) || text(msg.topic, 200) || 'New message';
    var body = text(msg.body, 500);
    if (body === undefined) body = msg.truncated ? 'New message (open to read it)' : text(msg.data, 500) || '';
    var options = { body: body, data: { url: msg.url, topic: msg.topic, cursor: msg.cursor, truncated: !!msg.truncated } };
    if (typeof msg.icon === 'string') options.icon = msg.icon;
    // The cursor as tag: a message the push service hands over twice replaces itself instead of showing twice.
    if (typeof msg.cursor === 'string') options.tag = msg.cursor;
    event.waitUntil(
      Promise.all([
        self.registration.showNotification(title, options),
        self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (list) {
          list.forEach(function (c) {
            c.postMessage({ omnipush: 'push', message: msg });
          });
        }),
      ]),
    );
  });
  self.addEventListener('notificationclick', function (event) {
    event.notification.close();
    var url = event.notification.data && event.notification.data.url;
    if (typeof url !== 'string' || !url) return;
    var target = new URL(url, self.location.href).href;
    event.waitUntil(
      self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then(function (list) {
        for (var i = 0; i < list.length; i++) {
          if (list[i].url === target && 'focus' in list[i]) return list[i].focus();
        }
        return self.clients.openWindow(target);
      }),
    );
  });
  self.addEventListener('install', function () {
    self.skipWaiting();
  });
  self.addEventListener('activate', function (event) {
    event.waitUntil(self.clients.claim());
  });
})();
`;
