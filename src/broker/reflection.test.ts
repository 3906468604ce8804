import { create, fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { describe, expect, it } from 'vitest';
import { ServerReflectionRequestSchema } from '../gen/grpc/reflection/v1/reflection_pb.js';
import { GrpcStatus } from './grpc-status.js';
import {
  createReflectionService,
  REFLECTION_V1_PATH,
  REFLECTION_V1ALPHA_PATH,
} from './reflection.js';

const service = createReflectionService();
const ask = (messageRequest: object) =>
  service.answer(create(ServerReflectionRequestSchema, { host: 'h', messageRequest } as never));

describe('reflection answers', () => {
  it('serves both versions and echoes host and request', () => {
    expect(service.handles(REFLECTION_V1_PATH)).toBe(true);
    expect(service.handles(REFLECTION_V1ALPHA_PATH)).toBe(true);
    expect(service.handles('/grpc.health.v1.Health/Check')).toBe(false);
    const r = ask({ case: 'listServices', value: '' });
    expect(r.validHost).toBe('h');
    expect(r.originalRequest?.messageRequest.case).toBe('listServices');
  });

  it('a message symbol gives its file and its dependencies, each once', () => {
    const r = ask({
      case: 'fileContainingSymbol',
      value: 'mz_persist_client.internal.service.ProtoPushDiff',
    });
    expect(r.messageResponse.case).toBe('fileDescriptorResponse');
    const names = (
      r.messageResponse.value as { fileDescriptorProto: Uint8Array[] }
    ).fileDescriptorProto.map((b) => fromBinary(FileDescriptorProtoSchema, b).name);
    expect(names[0]).toBe('mz_persist_client/internal/service/pubsub.proto');
    expect(new Set(names).size).toBe(names.length);
    expect(names).toContain('mz_proto/proto.proto');
  });

  it('extensions are NOT_FOUND, a method of an unknown service too, an empty request INVALID_ARGUMENT', () => {
    const ext = ask({
      case: 'fileContainingExtension',
      value: { containingType: 'grpc.health.v1.HealthCheckRequest', extensionNumber: 100 },
    });
    expect(ext.messageResponse).toMatchObject({
      case: 'errorResponse',
      value: { errorCode: GrpcStatus.NOT_FOUND },
    });
    const method = ask({ case: 'fileContainingSymbol', value: 'grpc.health.v1.Health.Nope' });
    expect(method.messageResponse).toMatchObject({
      case: 'errorResponse',
      value: { errorCode: GrpcStatus.NOT_FOUND },
    });
    const empty = ask({ case: undefined });
    expect(empty.messageResponse).toMatchObject({
      case: 'errorResponse',
      value: { errorCode: GrpcStatus.INVALID_ARGUMENT },
    });
  });
});
