import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { describeConformance } from './conformance.test-suite.js';
import { openSqliteConsensus } from './sqlite.js';

// Every handle opens its own connection to one file, as separate processes would.
const dir = mkdtempSync(join(tmpdir(), 'persist-pubsub-sqlite-conformance-'));
const path = join(dir, 'consensus.db');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describeConformance('sqlite (file, synchronous=full)', () => openSqliteConsensus(path));
