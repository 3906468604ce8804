/**
 * gRPC server reflection on a real `persist-pubsub broker` process, asked by an independent
 * client (Python grpcio, protobuf by hand: test/fixtures/python/reflection_client.py) what
 * `grpcurl list` and `grpcurl describe` ask: the services, then the file declaring
 * `ProtoPersistPubSub` with its dependencies, on both `v1` and `v1alpha`; unknown names are
 * error responses on the stream; `--reflection false` turns it off (UNIMPLEMENTED).
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PYTHON, PYTHON_GRPCIO, requirePrerequisite } from './support/prerequisites.js';
import { type CliRun, ensureBuilt, spawnBroker } from './support/run-cli.js';

const CLIENT = fileURLToPath(new URL('./fixtures/python/reflection_client.py', import.meta.url));
const hasPython = requirePrerequisite(PYTHON_GRPCIO);
const runs: CliRun[] = [];

beforeAll(() => ensureBuilt(), 120_000);
afterEach(() => {
  for (const r of runs.splice(0)) if (r.child.exitCode === null) r.child.kill('SIGKILL');
});

/** Starts `persist-pubsub broker` on free ports; resolves with its gRPC address. */
async function broker(args: string[] = []): Promise<string> {
  const { run, grpc } = await spawnBroker(args);
  runs.push(run);
  return grpc;
}

type Answer = {
  services?: string[];
  files?: Array<{
    name: string;
    package: string;
    dependencies: string[];
    messages: string[];
    services: Array<{
      name: string;
      methods: Array<{
        name: string;
        input_type: string;
        output_type: string;
        client_streaming: boolean;
        server_streaming: boolean;
      }>;
    }>;
  }>;
  error?: { code: number; message: string };
  extensions?: { base_type: string };
  status?: string;
};

async function reflect(target: string, version: string, requests: string[]): Promise<Answer[]> {
  const { stdout } = await promisify(execFile)(PYTHON, [CLIENT, target, version, ...requests], {
    timeout: 20_000,
  });
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Answer);
}

const PUBSUB = 'mz_persist_client.internal.service.ProtoPersistPubSub';

describe.skipIf(!hasPython)('gRPC server reflection (real broker, Python grpcio client)', () => {
  it.each(['v1', 'v1alpha'])(
    '%s: lists the services and describes ProtoPersistPubSub',
    async (v) => {
      const target = await broker();
      const [list, bySymbol, byMethod, byFile, unknown, ext, end] = await reflect(target, v, [
        'list',
        `symbol:${PUBSUB}`,
        `symbol:${PUBSUB}.PubSub`,
        'file:grpc/health/v1/health.proto',
        'symbol:no.such.Service',
        'extensions:mz_persist_client.internal.service.ProtoPubSubMessage',
      ]);
      expect(list?.services).toEqual([
        'grpc.health.v1.Health',
        'grpc.reflection.v1.ServerReflection',
        'grpc.reflection.v1alpha.ServerReflection',
        PUBSUB,
      ]);
      // The file and its dependency (the timestamp message), as grpcurl needs to describe it.
      const files = bySymbol?.files ?? [];
      const main = files.find((f) => f.services.some((s) => s.name === 'ProtoPersistPubSub'));
      expect(main).toMatchObject({
        name: 'mz_persist_client/internal/service/pubsub.proto',
        package: 'mz_persist_client.internal.service',
      });
      expect(main?.messages).toEqual(
        expect.arrayContaining(['ProtoPubSubMessage', 'ProtoPushDiff']),
      );
      expect(main?.services[0]?.methods).toEqual([
        {
          name: 'PubSub',
          input_type: '.mz_persist_client.internal.service.ProtoPubSubMessage',
          output_type: '.mz_persist_client.internal.service.ProtoPubSubMessage',
          client_streaming: true,
          server_streaming: true,
        },
      ]);
      for (const dep of main?.dependencies ?? []) {
        expect(files.map((f) => f.name)).toContain(dep);
      }
      expect(byMethod?.files?.map((f) => f.name)).toEqual(files.map((f) => f.name));
      expect(byFile?.files?.[0]?.services[0]?.name).toBe('Health');
      expect(unknown?.error).toMatchObject({
        code: 5,
        message: expect.stringMatching(/no symbol/),
      });
      expect(ext?.extensions?.base_type).toBe(
        'mz_persist_client.internal.service.ProtoPubSubMessage',
      );
      expect(end).toEqual({ status: 'OK' });
    },
  );

  it('--reflection false turns it off: UNIMPLEMENTED', async () => {
    const target = await broker(['--reflection', 'false']);
    const [end] = await reflect(target, 'v1', ['list']);
    expect(end?.status).toBe('UNIMPLEMENTED');
  });
});
