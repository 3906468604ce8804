/**
 * The writer/reader setup of the SDK's integration tests: one shard opened on a writer and on a
 * reader persist client (the writer's first), both handles closed at cleanup, resolved once both
 * clients' pubsub is connected. What a test then commits and checks is its own.
 */
import type { PersistClient } from '../../src/client/index.js';
import { counterModel } from './counter-model.js';
import { until } from './wait.js';

export async function openWriterAndReader(
  writer: PersistClient,
  reader: PersistClient,
  shardId: string,
  cleanup: (() => unknown)[],
  timeoutMs = 5000,
) {
  const wh = await writer.openShard(shardId, counterModel);
  const rh = await reader.openShard(shardId, counterModel);
  cleanup.push(
    () => wh.close(),
    () => rh.close(),
  );
  await until(
    () => reader.pubsub.status.state === 'connected' && writer.pubsub.status.state === 'connected',
    timeoutMs,
    'writer and reader connected',
  );
  return { wh, rh };
}
