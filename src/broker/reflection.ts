/**
 * gRPC server reflection on the broker's gRPC port (`grpc.reflection.v1` and the older
 * `grpc.reflection.v1alpha`; https://github.com/grpc/grpc/blob/master/doc/server-reflection.md),
 * so `grpcurl -plaintext HOST:6879 list` / `describe` show `ProtoPersistPubSub` and its
 * messages without a copy of the .proto files.
 *
 * It serves the descriptors compiled into src/gen (the same ones the broker speaks): the pubsub
 * service and its dependencies, `grpc.health.v1` and reflection itself. One bidirectional
 * stream answers each request in order: `list_services`, `file_by_filename`,
 * `file_containing_symbol` (a package-qualified service, method, message or enum) with the
 * file's transitive dependencies, `all_extension_numbers_of_type` (none: these files declare no
 * extensions) and `file_containing_extension` (NOT_FOUND). An unknown name is an
 * `error_response` on the stream, as the standard says, not the end of the call; a request that
 * does not decode ends the call with INVALID_ARGUMENT. The two versions are the same messages
 * under two package names, so one codec serves both paths.
 *
 * Like health, reflection needs no bearer token: it reveals only the public schema. The broker
 * option `reflection: false` (CLI `--reflection false`) turns it off (UNIMPLEMENTED, as for any
 * unknown method).
 */
import { create, createRegistry, type DescFile, fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { file_grpc_health_v1_health } from '../gen/grpc/health/v1/health_pb.js';
import {
  file_grpc_reflection_v1_reflection,
  type ServerReflectionRequest,
  ServerReflectionRequestSchema,
  type ServerReflectionResponse,
  ServerReflectionResponseSchema,
} from '../gen/grpc/reflection/v1/reflection_pb.js';
import { file_grpc_reflection_v1alpha_reflection } from '../gen/grpc/reflection/v1alpha/reflection_pb.js';
import { file_mz_persist_client_internal_service_pubsub } from '../gen/mz_persist_client/internal/service/pubsub_pb.js';
import { createFrameDecoder, frameMessage } from '../protocol/index.js';
import { type CallStatus, GrpcStatus } from './grpc-status.js';
import type { ServerStream } from './server-stream.js';

export const REFLECTION_V1_PATH = '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo';
export const REFLECTION_V1ALPHA_PATH =
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo';

/** The largest reflection request accepted, in bytes (real ones are a symbol name). */
const MAX_REFLECTION_REQUEST_BYTES = 16 * 1024;

/** The files the broker's gRPC port serves, with every dependency reachable from them. */
export const BROKER_SERVICE_FILES: readonly DescFile[] = [
  file_mz_persist_client_internal_service_pubsub,
  file_grpc_health_v1_health,
  file_grpc_reflection_v1_reflection,
  file_grpc_reflection_v1alpha_reflection,
];

export interface ReflectionService {
  /** True for the two reflection method paths. */
  handles(path: string | undefined): boolean;
  /** Serves one `ServerReflectionInfo` call. */
  handle(stream: ServerStream): void;
  /** The response to one request (exposed for tests). */
  answer(request: ServerReflectionRequest): ServerReflectionResponse;
}

/** Every file reachable from `roots`, each once, dependencies before their dependents. */
function withDependencies(roots: readonly DescFile[]): DescFile[] {
  const seen = new Set<string>();
  const out: DescFile[] = [];
  const visit = (f: DescFile) => {
    if (seen.has(f.proto.name)) return;
    seen.add(f.proto.name);
    for (const d of f.dependencies) visit(d);
    out.push(f);
  };
  for (const f of roots) visit(f);
  return out;
}

export function createReflectionService(
  roots: readonly DescFile[] = BROKER_SERVICE_FILES,
): ReflectionService {
  const files = withDependencies(roots);
  const registry = createRegistry(...files);
  const byName = new Map(files.map((f) => [f.proto.name, f]));
  const encoded = new Map(
    files.map((f) => [f.proto.name, toBinary(FileDescriptorProtoSchema, f.proto)]),
  );
  const services = files.flatMap((f) => f.services.map((s) => s.typeName)).sort();

  /** The file and every file it needs, each serialized once. */
  function fileResponse(file: DescFile): ServerReflectionResponse['messageResponse'] {
    return {
      case: 'fileDescriptorResponse',
      value: {
        $typeName: 'grpc.reflection.v1.FileDescriptorResponse',
        fileDescriptorProto: withDependencies([file])
          .reverse()
          .map((f) => encoded.get(f.proto.name) as Uint8Array),
      },
    };
  }

  function notFound(message: string): ServerReflectionResponse['messageResponse'] {
    return {
      case: 'errorResponse',
      value: {
        $typeName: 'grpc.reflection.v1.ErrorResponse',
        errorCode: GrpcStatus.NOT_FOUND,
        errorMessage: message,
      },
    };
  }

  /** The file declaring `symbol`: a type or service, or a method `Service.Method`. */
  function fileOfSymbol(symbol: string): DescFile | undefined {
    const desc = registry.get(symbol);
    if (desc !== undefined) return desc.file;
    const dot = symbol.lastIndexOf('.');
    if (dot <= 0) return undefined;
    const service = registry.getService(symbol.slice(0, dot));
    const method = symbol.slice(dot + 1);
    return service?.methods.some((m) => m.name === method) ? service.file : undefined;
  }

  function answer(request: ServerReflectionRequest): ServerReflectionResponse {
    const r = request.messageRequest;
    let messageResponse: ServerReflectionResponse['messageResponse'];
    switch (r.case) {
      case 'listServices':
        messageResponse = {
          case: 'listServicesResponse',
          value: {
            $typeName: 'grpc.reflection.v1.ListServiceResponse',
            service: services.map((name) => ({
              $typeName: 'grpc.reflection.v1.ServiceResponse',
              name,
            })),
          },
        };
        break;
      case 'fileByFilename': {
        const f = byName.get(r.value);
        messageResponse = f === undefined ? notFound(`no file ${r.value}`) : fileResponse(f);
        break;
      }
      case 'fileContainingSymbol': {
        const f = fileOfSymbol(r.value);
        messageResponse = f === undefined ? notFound(`no symbol ${r.value}`) : fileResponse(f);
        break;
      }
      case 'allExtensionNumbersOfType':
        messageResponse =
          registry.getMessage(r.value) === undefined
            ? notFound(`no message type ${r.value}`)
            : {
                case: 'allExtensionNumbersResponse',
                value: {
                  $typeName: 'grpc.reflection.v1.ExtensionNumberResponse',
                  baseTypeName: r.value,
                  extensionNumber: [],
                },
              };
        break;
      case 'fileContainingExtension':
        messageResponse = notFound(
          `no extension ${r.value.extensionNumber} of ${r.value.containingType}`,
        );
        break;
      default:
        messageResponse = {
          case: 'errorResponse',
          value: {
            $typeName: 'grpc.reflection.v1.ErrorResponse',
            errorCode: GrpcStatus.INVALID_ARGUMENT,
            errorMessage: 'the request names no message_request',
          },
        };
    }
    return create(ServerReflectionResponseSchema, {
      validHost: request.host,
      originalRequest: request,
      messageResponse,
    });
  }

  return {
    handles: (path) => path === REFLECTION_V1_PATH || path === REFLECTION_V1ALPHA_PATH,
    answer,
    handle(stream) {
      const decoder = createFrameDecoder(MAX_REFLECTION_REQUEST_BYTES);
      let failed = false;
      // Before the first answer, `end` is a trailers-only response.
      const fail = (s: CallStatus) => {
        failed = true;
        stream.end(s);
      };
      stream.listen({
        data(chunk) {
          if (failed) return;
          const err = decoder.push(chunk, (message) => {
            if (failed) return;
            let request: ServerReflectionRequest;
            try {
              request = fromBinary(ServerReflectionRequestSchema, message);
            } catch {
              fail({
                code: GrpcStatus.INVALID_ARGUMENT,
                message: 'malformed ServerReflectionRequest',
              });
              return;
            }
            if (!stream.headersSent) stream.sendHeaders();
            stream.write(frameMessage(toBinary(ServerReflectionResponseSchema, answer(request))));
          });
          if (err !== undefined && !failed) {
            fail({
              code:
                err.code === 'compressed' ? GrpcStatus.UNIMPLEMENTED : GrpcStatus.INVALID_ARGUMENT,
              message: `bad reflection request frame: ${err.code}`,
            });
          }
        },
        end() {
          if (failed) return;
          if (!stream.headersSent) stream.sendHeaders();
          stream.end({ code: GrpcStatus.OK, message: '' });
        },
      });
    },
  };
}
