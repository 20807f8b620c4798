import { z } from 'zod';
import { parseRange } from './address-range.js';
import { durationSeconds } from './duration.js';
import { objectAt } from './schema-walk.js';
import { closestKey } from './suggest.js';
import { webhooksSchema } from './webhooks-schema.js';
import { receiptsSchema } from './receipts-schema.js';

/** A topic-filter list for one action, as written in config files and JWT claims. */
const filterList = z.array(z.string().min(1)).max(1000);

/** Grants as written in config and in the JWT claim: allow lists, and deny lists that win. */
export const grantsSchema = z
  .object({
    publish: filterList.default([]),
    subscribe: filterList.default([]),
    deny: z
      .object({ publish: filterList.default([]), subscribe: filterList.default([]) })
      .strict()
      .default({}),
    /** The server API (`/v1/admin/...`): list and act on every connection, publish anywhere. Default false; never for anonymous. */
    admin: z.boolean().optional(),
    /** Topics whose member list and join/leave events may be read (docs/presence.md); they reveal identities. */
    presence: filterList.optional(),
  })
  .strict();

export type GrantsConfig = z.infer<typeof grantsSchema>;

/** A span in seconds, written as a number (`90`) or a duration string (`"90s"`, `"5m"`, `"1d"`, `"500ms"`). */
const seconds = durationSeconds(z.number().positive().finite());
const bytes = z.number().int().positive();

/** A publish rate (docs/security.md, quotas); 0 switches a dimension off. */
const publishRateSchema = z
  .object({
    messagesPerSecond: z.number().min(0).finite().default(0),
    bytesPerSecond: z.number().min(0).finite().default(0),
    /** Seconds of full-rate traffic a quiet client may send at once (the buckets' depth). */
    burst: seconds.default(2),
  })
  .strict()
  .default({});

const retentionRuleSchema = z
  .object({
    filter: z.string().min(1),
    maxCount: z.number().int().positive().optional(),
    /** seconds */
    maxAge: seconds.optional(),
  })
  .strict();

/** A subscribe or publish hook: topics its filter covers are checked by the app (docs/hooks.md). */
const ruleHookSchema = z
  .object({
    /** topic filter (`+`, `#`) this rule applies to; topics outside every rule never ask the app */
    filter: z.string().min(1),
    /** the app's URL (POST, JSON) */
    url: z.string().url(),
    /** seconds the app has to answer */
    timeout: seconds.default(2),
    /** requests in flight at once to this rule's URL */
    concurrency: z.number().int().positive().default(32),
    /** requests that may wait for a slot; past it, the action fails as if the app were down */
    maxQueued: z.number().int().min(0).default(1000),
    /** when the app fails (down, slow, garbage): false refuses the action; true lets it through unchanged */
    failOpen: z.boolean().default(false),
  })
  .strict();

export const configSchema = z
  .object({
    http: z
      .object({
        host: z.string().min(1).default('127.0.0.1'),
        port: z.number().int().min(0).max(65535).default(8080),
        /** Allowed CORS origins; `*` for any. Empty: no CORS headers. */
        corsOrigins: z.array(z.string()).default(['*']),
        maxHeaderBytes: bytes.default(16 * 1024),
        /** Largest request body accepted by the publish API (a batch may carry many messages). */
        maxBodyBytes: bytes.default(4 * 1024 * 1024),
        /**
         * Reverse proxies in front of the server (addresses or CIDR ranges): from their sockets the
         * client's address is read from `X-Forwarded-For`, for per-address quotas, the pre-auth pool,
         * hooks and logs. Empty: the socket's address is the client's, and the header is never read.
         */
        trustedProxies: z
          .array(
            z.string().superRefine((v, c) => {
              try {
                parseRange(v);
              } catch (e) {
                c.addIssue({ code: z.ZodIssueCode.custom, message: (e as Error).message });
              }
            }),
          )
          .default([]),
        /** Serve the public URL under this base in discovery (default: derived from the request's Host). */
        publicUrl: z.string().url().optional(),
        /**
         * HTTPS on `port` for every HTTP door (API, SSE, long-poll, WebSocket, MQTT over WebSocket):
         * PEM certificate chain and key, or paths to them. Off unless set; browsers need https for Web Push.
         */
        tls: z
          .object({
            cert: z.string().min(1),
            key: z.string().min(1),
          })
          .strict()
          .optional(),
      })
      .strict()
      .default({}),
    store: z
      .object({
        kind: z.enum(['sqlite', 'memory', 'redis']).default('sqlite'),
        /** Directory for the sqlite database. */
        dir: z.string().min(1).default('./data'),
        /** `normal` survives a process crash (kill -9); `full` also survives power loss, slower. */
        synchronous: z.enum(['normal', 'full']).default('normal'),
        /** Used when `kind` is `redis`. */
        redis: z
          .object({
            url: z.string().min(1).default('redis://127.0.0.1:6379'),
            /** Start of every key and of the bus channel; lets several deployments share one Redis. */
            prefix: z.string().min(1).default('omnipush:'),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    /**
     * How messages reach subscribers. `local`: this process fans out its own publishes. `redis`:
     * every process sharing the Redis store fans out all publishes (docs/cluster.md); needs store.kind redis.
     */
    bus: z
      .object({
        kind: z.enum(['local', 'redis']).default('local'),
      })
      .strict()
      .default({}),
    limits: z
      .object({
        maxPayloadBytes: bytes.default(1024 * 1024),
        maxTopicBytes: bytes.max(65535).default(1024),
        maxTopicLevels: z.number().int().positive().max(1024).default(32),
        /** Bytes a subscriber may fall behind before its connection is closed; for MQTT also the bytes of packets read behind one still being handled. */
        maxQueueBytes: bytes.default(4 * 1024 * 1024),
        /** Streaming connections (SSE + held polls + ...) this process accepts. */
        maxConnections: z.number().int().positive().default(18000),
        /**
         * Sockets that have not authenticated yet (raw MQTT before CONNECT, WebSocket waiting for
         * `auth`, HTTP requests still sending their head) wait in a small pool of their own, so they
         * cannot take the slots of authenticated connections. Past `max` or `perAddress` a new one
         * is closed at once.
         */
        preAuth: z
          .object({
            /** Unauthenticated sockets this process holds at once. */
            max: z.number().int().positive().default(2000),
            /**
             * Unauthenticated sockets from one source address. A socket counts only until its first
             * request head or CONNECT is read (milliseconds for a real client), but a NAT'd office or
             * a page opening many streams at once bursts: a few hundred leaves them room.
             */
            perAddress: z.number().int().positive().default(256),
            /** seconds an unauthenticated socket may stay (the doors' own timeouts apply when shorter) */
            timeout: seconds.default(10),
            /**
             * seconds an address may go past `perAddress` while its oldest waiting socket is younger
             * than this: a burst of clients behind one NAT or proxy connecting at once; 0 = never.
             */
            burst: z.number().min(0).finite().default(1),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    history: z
      .object({
        maxCount: z.number().int().positive().default(1000),
        /** seconds */
        maxAge: seconds.default(24 * 3600),
        /** Per-filter overrides; the first matching rule wins. */
        rules: z.array(retentionRuleSchema).default([]),
        /** seconds between retention sweeps */
        pruneInterval: seconds.default(5),
      })
      .strict()
      .default({}),
    sse: z
      .object({
        /** seconds between heartbeat comments */
        heartbeat: seconds.default(15),
        /** `retry:` advice to clients, ms */
        retry: z.number().int().min(0).default(2000),
      })
      .strict()
      .default({}),
    websocket: z
      .object({
        /** permessage-deflate; off by default (it costs CPU and memory per socket, and frames can't be shared). */
        perMessageDeflate: z.boolean().default(false),
        /** Largest frame or message a client may send; bigger ones close the socket with 1009. */
        maxFrameBytes: bytes.default(2 * 1024 * 1024),
        /** seconds between pings; a peer that missed the previous one is dropped */
        pingInterval: seconds.default(30),
        /** seconds a socket that arrived without credentials has to send an `auth` message (when anonymous access is off) */
        authTimeout: seconds.default(10),
        /** Path of an echo endpoint for WebSocket conformance suites (off when unset). */
        echoPath: z.string().startsWith('/').optional(),
      })
      .strict()
      .default({}),
    longpoll: z
      .object({
        /** seconds a poll is held when nothing is there */
        defaultTimeout: seconds.default(25),
        maxTimeout: seconds.default(120),
        /** most messages returned by one poll */
        maxMessages: z.number().int().positive().default(100),
        /**
         * seconds a poll waits before its connection is parked out of node's HTTP machinery (~3.4 KB
         * less while it waits, one connection set-up more when it answers); 0 parks at once. Busy
         * topics whose polls answer within a second spend less CPU with 1.
         */
        parkAfter: z.number().min(0).finite().default(0),
      })
      .strict()
      .default({}),
    auth: z
      .object({
        /**
         * Let requests without credentials in, with `anonymous` grants. Default: true when no JWT
         * key is configured (then the server must bind to loopback), false otherwise.
         */
        allowAnonymous: z.boolean().optional(),
        /** Grants of anonymous requests. Default: everything when no auth is configured, else nothing. */
        anonymous: grantsSchema.optional(),
        jwt: z
          .object({
            /** HS256 shared secret. */
            secret: z.string().min(16).optional(),
            /** PEM public keys (or paths to PEM files) for RS256, ES256 and EdDSA. */
            publicKeys: z.array(z.string().min(1)).default([]),
            /** Path to a JWKS file. */
            jwksFile: z.string().min(1).optional(),
            /** URL of a JWKS, fetched when needed and again when a token names an unknown `kid` (docs/hooks.md). */
            jwksUrl: z.string().url().optional(),
            /** An OIDC issuer: its `/.well-known/openid-configuration` names the JWKS; also the default `issuer`. */
            oidcIssuer: z.string().url().optional(),
            /** seconds a fetched JWKS is trusted before it is fetched again */
            jwksCacheMaxAge: seconds.default(600),
            /** seconds between two fetches of the JWKS caused by unknown `kid`s (bounds what a forged token can cause) */
            jwksCooldown: seconds.default(30),
            issuer: z.string().optional(),
            audience: z.string().optional(),
            /** Name of the claim holding the grants. */
            claim: z.string().min(1).default('omnipush'),
            /**
             * seconds; when set, a token without `exp`, or whose `exp` is further ahead than this,
             * is refused (a leaked long-lived token stays useful for at most this long).
             */
            maxLifetime: seconds.optional(),
            /**
             * Tokens whose successful verification is remembered (a bearer token sent with every
             * publish is checked once); 0 verifies every time. An entry ends at the token's `exp`
             * or after `verifiedCacheTtl`, whichever comes first.
             */
            verifiedCache: z.number().int().min(0).default(4096),
            /** seconds a remembered verification is used at most (a key dropped from a JWKS stops its tokens within this time) */
            verifiedCacheTtl: seconds.default(60),
          })
          .strict()
          .optional(),
        /**
         * Username/password principals (MQTT CONNECT). `passwordHash` is an scrypt hash as printed by
         * `omnipush passwd`; plain passwords are refused.
         */
        users: z
          .array(
            z
              .object({
                username: z.string().min(1),
                passwordHash: z.string().startsWith('scrypt$'),
                grants: grantsSchema.default({}),
              })
              .strict(),
          )
          .default([]),
        /** Cookie read for a token when no header or query parameter carries one (EventSource). */
        cookieName: z.string().min(1).default('omnipush_token'),
      })
      .strict()
      .default({}),
    mqtt: z
      .object({
        /** Serve MQTT at all (TCP, TLS and `/mqtt` over WebSocket). */
        enabled: z.boolean().default(true),
        /** TCP listen address; default: `http.host`. */
        host: z.string().min(1).optional(),
        /** TCP port; 0 picks a free one (the listening line tells which). */
        port: z.number().int().min(0).max(65535).default(1883),
        /** Path of MQTT over WebSocket on the HTTP server (subprotocol `mqtt`); empty turns it off. */
        wsPath: z.string().default('/mqtt'),
        /** MQTT over TLS: PEM certificate and key (or paths to them). Off unless both are set. */
        tls: z
          .object({
            port: z.number().int().min(0).max(65535).default(8883),
            cert: z.string().min(1),
            key: z.string().min(1),
          })
          .strict()
          .optional(),
        /** Largest packet a client may send (and the Maximum Packet Size announced in CONNACK). */
        maxPacketBytes: z.number().int().min(64).max(268435455).default(2 * 1024 * 1024),
        /** QoS 1/2 publishes a client may have unacknowledged towards us (our Receive Maximum). */
        receiveMaximum: z.number().int().min(1).max(65535).default(100),
        /** Our own cap on QoS 1/2 messages in flight to one client (its Receive Maximum may lower it). */
        maxInflight: z.number().int().min(1).max(65535).default(100),
        /** Messages waiting behind the in-flight window per session; past it see docs/mqtt.md. */
        maxQueuedMessages: z.number().int().min(1).default(1000),
        /** seconds; highest keepalive granted (announced as Server Keep Alive when lowered); 0 = no cap */
        maxKeepAlive: durationSeconds(z.number().int().min(0).max(65535)).default(600),
        /** seconds; highest session expiry interval granted (also for 3.1.1 persistent sessions) */
        maxSessionExpiry: durationSeconds(z.number().int().min(0).max(4294967295)).default(7 * 24 * 3600),
        /** Topic aliases a client may set up towards us (Topic Alias Maximum); 0 = none. */
        topicAliasMaximum: z.number().int().min(0).max(65535).default(64),
        /** seconds a new connection has to send a whole CONNECT; also the time its answer may take (plus cluster.takeoverTimeout in a cluster) */
        connectTimeout: seconds.default(10),
        /** seconds between `$SYS/broker/...` updates; 0 = none */
        sysInterval: durationSeconds(z.number().min(0)).default(10),
        /**
         * What every client identifier must start with; `{sub}` stands for the principal's id (the
         * user name, or the token's `sub`). E.g. `{sub}/`. Empty (default): any identifier.
         */
        clientIdPrefix: z.string().max(128).default(''),
      })
      .strict()
      .default({}),
    webpush: z
      .object({
        /**
         * VAPID subject (`mailto:` or `https:` URL) push services may use to reach the operator.
         * Web Push is on when this is set; push services reject requests without it.
         */
        subject: z.string().min(1).optional(),
        /** VAPID key pair (base64url, raw P-256: 65-byte public, 32-byte private); generated and stored when unset. */
        publicKey: z.string().min(1).optional(),
        privateKey: z.string().min(1).optional(),
        /** seconds a push service should keep a message for an offline browser when the message has no ttl */
        defaultTtl: durationSeconds(z.number().int().min(0).max(28 * 86400)).default(86400),
        /** concurrent requests per push-service origin (also the size of its keep-alive pool) */
        concurrencyPerOrigin: z.number().int().positive().max(1024).default(32),
        /** seconds to wait for a push service's response before the attempt counts as failed */
        requestTimeout: seconds.default(15),
        /** backoff between retries, ms: exponential from min to max, with full jitter */
        retryMinDelay: z.number().int().positive().default(1000),
        retryMaxDelay: z.number().int().positive().default(15 * 60_000),
        /** Accept `http:` push endpoints (local test push services only). */
        allowHttpEndpoints: z.boolean().default(false),
        /**
         * Hosts a subscription endpoint may name: exact host names or `*.suffix`; `*` allows any.
         * Without this, anyone allowed to register could make the server POST to any URL it can reach.
         */
        endpointHosts: z
          .array(z.string().min(1))
          .default(['fcm.googleapis.com', 'android.googleapis.com', '*.push.services.mozilla.com', '*.notify.windows.com', 'web.push.apple.com', '*.push.apple.com']),
        /** PEM file(s) of extra CAs trusted for push-service TLS (a private push service). */
        caFiles: z.array(z.string().min(1)).default([]),
        /** Web Push subscriptions one principal may hold. */
        maxSubscriptionsPerPrincipal: z.number().int().positive().default(100),
      })
      .strict()
      .default({}),
    demo: z
      .object({
        /** Serve a demo page at /demo/ that subscribes and publishes through the client SDK. */
        enabled: z.boolean().default(false),
      })
      .strict()
      .default({}),
    /**
     * The server API (`/v1/admin/...`) and the operator's console at `/admin` (docs/http-api.md). The
     * console is on only when an API key or a user is configured; the API also takes JWTs with the admin grant.
     */
    admin: z
      .object({
        /** Static keys for `Authorization: Bearer <key>`; long random strings (at least 24 characters). */
        apiKeys: z.array(z.string().min(24, 'an admin API key must have at least 24 characters')).default([]),
        /** Console users; `passwordHash` as printed by `omnipush passwd` (scrypt). */
        users: z
          .array(z.object({ username: z.string().min(1).max(200), passwordHash: z.string().startsWith('scrypt$') }).strict())
          .default([]),
        /** seconds a console login lasts */
        sessionTtl: seconds.default(8 * 3600),
        /** Failed logins allowed per client address, and per username, within `loginWindow`; more get 429. */
        loginAttempts: z.number().int().positive().default(5),
        /** seconds */
        loginWindow: seconds.default(300),
        /** ms to wait for the other nodes' answers to a cluster-wide listing or action */
        clusterTimeout: z.number().int().positive().default(2000),
      })
      .strict()
      .default({}),
    /** Nodes sharing one Redis store (store.kind redis) find each other through it (docs/cluster.md). */
    cluster: z
      .object({
        /** seconds between a node's heartbeats (and lease renewals) */
        heartbeat: seconds.default(1),
        /** seconds without a heartbeat after which a node counts as dead and its work is taken over */
        nodeTimeout: seconds.default(5),
        /** seconds a node waits for another to give up an MQTT session it holds before going ahead */
        takeoverTimeout: seconds.default(2),
      })
      .strict()
      .refine((c) => c.nodeTimeout > c.heartbeat * 2, { message: 'nodeTimeout must be more than twice the heartbeat' })
      .default({}),
    /** Operator endpoints. */
    metrics: z
      .object({
        /** When set, `GET /metrics` requires `Authorization: Bearer <token>` (Prometheus `authorization` / `bearer_token`). */
        token: z.string().min(16).optional(),
        /**
         * Milliseconds between samples of the event-loop delay gauges. 10 costs nothing measurable;
         * 1 measures stalls to the millisecond but cuts fan-out write batches short (a third
         * fewer WebSocket and MQTT deliveries per second): for diagnosis and benchmarks.
         */
        loopDelayResolution: z.number().int().min(1).max(1000).default(10),
      })
      .strict()
      .default({}),
    /**
     * Quotas per principal and per source address, on every door together (docs/security.md). A
     * count of 0 switches that quota off. Anonymous clients are held by the per-address quotas only.
     * Connections and subscriptions per principal hold cluster-wide; the rest per node.
     */
    quotas: z
      .object({
        /** Live connections one principal may hold (SSE streams, WebSockets, held polls, MQTT). */
        connectionsPerPrincipal: z.number().int().min(0).default(100),
        /** Live authenticated connections from one IP address (high: many users may share a NAT). */
        connectionsPerAddress: z.number().int().min(0).default(1000),
        /** Filters one connection may hold: MQTT filters and `$share` names, a WebSocket's subscriptions, a stream's `topic`s. */
        subscriptionsPerConnection: z.number().int().min(0).default(1000),
        /** Filters one principal may hold over all its connections. */
        subscriptionsPerPrincipal: z.number().int().min(0).default(10000),
        /** Publish rates (token buckets), off until configured. */
        publish: z
          .object({
            perPrincipal: publishRateSchema,
            perAddress: publishRateSchema,
          })
          .strict()
          .default({}),
        /** Refusals (over a quota) within `refusalWindow` seconds after which a WebSocket is closed with 1008. */
        wsRefusalsBeforeClose: z.number().int().positive().default(10),
        refusalWindow: seconds.default(10),
        /**
         * Topics one principal may hold a retained message on (counted in the store, so across
         * restarts and, with Redis, the cluster); 0 turns the quota off. 10000 is far above what a
         * device or an app keeps as state, and low enough that one credential cannot grow the
         * retained set (read by every wildcard subscriber) without bound.
         */
        retainedTopicsPerPrincipal: z.number().int().min(0).default(10_000),
      })
      .strict()
      .default({}),
    /** Who is subscribed to a topic now, and join/leave events (docs/presence.md). Off for topics no rule covers. */
    presence: z
      .object({
        /** Filters with presence: `joinLeave` sends join/leave events; a filter's list holds at most `maxMembers`. */
        rules: z
          .array(
            z
              .object({
                filter: z.string().min(1),
                joinLeave: z.boolean().default(false),
                maxMembers: z.number().int().positive().default(10_000),
              })
              .strict(),
          )
          .default([]),
        /** seconds a long-poll client stays present after its last poll ended */
        pollGrace: seconds.default(30),
        /** seconds a member with a stable client id stays present after its connection ended (a reconnect does not flap) */
        leaveGrace: durationSeconds(z.number().min(0).finite()).default(5),
        /** largest member info (UTF-8 JSON bytes), from the token's `info` claim or a WebSocket subscribe frame */
        maxInfoBytes: bytes.default(512),
        /** most members in one page of `GET /v1/presence` */
        maxPageSize: z.number().int().positive().default(1000),
      })
      .strict()
      .default({}),
    /** Asking the app: who connects, with which grants (docs/hooks.md). */
    hooks: z
      .object({
        connect: z
          .object({
            /** The app's URL that answers connect hooks (POST, JSON). Unset: no connect hook. */
            url: z.string().url().optional(),
            /**
             * `fallback`: a bearer token that verifies as a JWT is used as is, anything else asks the
             * hook; `always`: every connection asks the hook (JWT keys are not consulted).
             */
            mode: z.enum(['fallback', 'always']).default('fallback'),
            /** Request headers (lower case) passed to the hook from HTTP doors; others are not sent. */
            headers: z.array(z.string().min(1).toLowerCase()).default([]),
            /** Cookie names passed to the hook from HTTP doors; others are not sent. */
            cookies: z.array(z.string().min(1)).default([]),
            /** seconds the hook has to answer (a slower answer counts as a failure) */
            timeout: seconds.default(2),
            /** hook requests in flight at once; more wait */
            concurrency: z.number().int().positive().default(32),
            /** hook requests that may wait for a free slot; past it, a connection fails as if the hook were down */
            maxQueued: z.number().int().min(0).default(1000),
            /** seconds an answer is reused for the same credentials (never beyond the answer's own expiry) */
            cacheTtl: durationSeconds(z.number().min(0).finite()).default(30),
            /** answers kept at most (oldest go first) */
            cacheMax: z.number().int().min(0).default(10000),
            /** when the hook fails (down, slow, garbage): false refuses the connection; true treats it as anonymous */
            failOpen: z.boolean().default(false),
          })
          .strict()
          .default({}),
        /** Subscriptions the app is asked about: the first rule whose filter overlaps the subscribed filter. */
        subscribe: z.array(ruleHookSchema).max(100).default([]),
        /** Publishes the app is asked about (allow, refuse, or replace payload and properties): the first rule whose filter matches the topic. */
        publish: z.array(ruleHookSchema).max(100).default([]),
      })
      .strict()
      .default({}),
    /** Signed webhooks telling the app about connections, subscriptions and messages (docs/webhooks.md). */
    webhooks: webhooksSchema,
    /** Delivery receipts and the Web Push fallback for messages nobody acknowledged (docs/receipts.md). */
    receipts: receiptsSchema,
    /** Pushes triggered by the app's data, idempotent and delayed publish (docs/triggers.md). */
    triggers: z
      .object({
        /** The PostgreSQL outbox: off unless `url` is set. */
        postgres: z
          .object({
            /** Connection string, e.g. postgres://user:pass@db:5432/app */
            url: z.string().min(1).optional(),
            /** Outbox table, optionally schema-qualified. */
            table: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$/).default('omnipush_outbox'),
            /** Create the table, its NOTIFY trigger and index on start when missing. */
            createTable: z.boolean().default(true),
            /** seconds between polls when no NOTIFY came (the fallback) */
            pollInterval: seconds.default(5),
            /** rows taken per transaction */
            batchSize: z.number().int().positive().max(10_000).default(100),
            /** LISTEN channel the table's trigger notifies */
            channel: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).default('omnipush_outbox'),
          })
          .strict()
          .default({}),
        /** A Redis Streams consumer group: off unless `streams` is non-empty. */
        redisStreams: z
          .object({
            /** Redis to read; default the store's Redis (store.redis.url). */
            url: z.string().min(1).optional(),
            streams: z.array(z.string().min(1)).max(64).default([]),
            group: z.string().min(1).default('omnipush'),
            /** Consumer name in the group; default this node's id. */
            consumer: z.string().min(1).optional(),
            /** entries read per call */
            batchSize: z.number().int().positive().max(10_000).default(100),
          })
          .strict()
          .default({}),
        idempotency: z
          .object({
            /** seconds a publish's idempotency key is remembered */
            window: seconds.default(24 * 3600),
          })
          .strict()
          .default({}),
        delayed: z
          .object({
            /** longest delay a publish may ask for, seconds */
            maxDelay: seconds.default(30 * 86400),
            /** delayed publishes one principal may have pending (quota_exceeded past it) */
            maxPerPrincipal: z.number().int().positive().default(1000),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    log: z
      .object({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        /** `auto`: human-readable lines (pino-pretty) when stderr is a terminal, JSON lines otherwise. */
        format: z.enum(['auto', 'pretty', 'json']).default('auto'),
      })
      .strict()
      .default({}),
  })
  .strict();

export type Config = z.infer<typeof configSchema>;
/** What a config file (or a test) may give: every key optional. */
export type ConfigInput = z.input<typeof configSchema>;

/**
 * Checks and completes a config object. Throws an Error whose message names each bad key
 * (`http.port: Expected number, received string`).
 */
export function parseConfig(input: unknown): Config {
  const r = configSchema.safeParse(input ?? {});
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const path = i.path.join('.') || '(root)';
    if (i.code === 'unrecognized_keys') {
      const base = i.path.length ? `${i.path.join('.')}.` : '';
      const allowed = Object.keys(objectAt(configSchema, i.path)?.shape ?? {});
      const named = i.keys.map((k) => {
        const near = closestKey(k, allowed);
        return near ? `${base}${k} (did you mean ${base}${near}?)` : base + k;
      });
      return `unknown key${i.keys.length > 1 ? 's' : ''}: ${named.join(', ')}`;
    }
    return `${path}: ${i.message}`;
  });
  throw new Error(`invalid configuration:\n  ${lines.join('\n  ')}`);
}
