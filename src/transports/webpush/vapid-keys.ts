import type { RecordChange } from '../../core/store.js';
import { checkVapidKeys, generateVapidKeys, type VapidKeys } from './vapid.js';
import { META_KIND } from './queue.js';

const VAPID_KEY = 'vapid';

/** Where keys are kept: the hub's records (server) or the store itself (CLI). */
export interface RecordAccess {
  getRecord(kind: string, key: string): Promise<Buffer | undefined>;
  putRecords(changes: RecordChange[]): Promise<void>;
}

/**
 * The server's VAPID key pair: from config when given (both halves), else the one stored on an
 * earlier start, else a new one, stored so that browsers' subscriptions stay valid across restarts.
 */
export async function loadOrCreateVapidKeys(records: RecordAccess, configured: { publicKey?: string; privateKey?: string }): Promise<{ keys: VapidKeys; source: 'config' | 'store' | 'generated' }> {
  if (configured.publicKey || configured.privateKey) {
    if (!configured.publicKey || !configured.privateKey) throw new Error('webpush.publicKey and webpush.privateKey go together: give both or neither');
    const keys = { publicKey: configured.publicKey, privateKey: configured.privateKey };
    checkVapidKeys(keys);
    return { keys, source: 'config' };
  }
  const stored = await records.getRecord(META_KIND, VAPID_KEY);
  if (stored) {
    const keys = JSON.parse(stored.toString('utf8')) as VapidKeys;
    checkVapidKeys(keys);
    return { keys, source: 'store' };
  }
  const keys = generateVapidKeys();
  await records.putRecords([{ kind: META_KIND, key: VAPID_KEY, value: Buffer.from(JSON.stringify(keys)) }]);
  return { keys, source: 'generated' };
}
