/**
 * `grpc.health.v1.Health` on the broker's gRPC port (gRPC health checking protocol,
 * https://github.com/grpc/grpc/blob/master/doc/health-checking.md):
 * - services: `""` (the whole server) and `mz_persist_client.internal.service.ProtoPersistPubSub`;
 *   SERVING while the broker serves, NOT_SERVING while it drains.
 * - `Check` of an unknown service → NOT_FOUND; `Watch` of one → SERVICE_UNKNOWN, kept open.
 * - `Watch` sends the current status at once and every change after.
 * - `List` returns every service's status.
 * Health calls need no bearer token: probes (Kubernetes, grpc_health_probe) carry none, and the
 * answer reveals nothing.
 */

import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  HealthCheckRequestSchema,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from '../gen/grpc/health/v1/health_pb.js';
import { createFrameDecoder, frameMessage, PUBSUB_SERVICE_NAME } from '../protocol/index.js';
import { type CallStatus, GrpcStatus } from './grpc-status.js';
import type { ServerStream } from './server-stream.js';

export const HEALTH_CHECK_PATH = '/grpc.health.v1.Health/Check';
export const HEALTH_WATCH_PATH = '/grpc.health.v1.Health/Watch';
export const HEALTH_LIST_PATH = '/grpc.health.v1.Health/List';

const MAX_HEALTH_REQUEST_BYTES = 4096;
const OK: CallStatus = { code: GrpcStatus.OK, message: '' };

export interface HealthService {
  /** Serves one health call; `path` is one of the `HEALTH_*_PATH`s. */
  handle(stream: ServerStream, path: string): void;
  /** The serving status may have changed: tell watchers. */
  notify(): void;
  /** Ends every Watch call (at close). */
  endAll(): void;
}

export function createHealthService(serving: () => boolean): HealthService {
  const watchers = new Map<ServerStream, { service: string; last: ServingStatus }>();

  function statusOf(service: string): ServingStatus {
    if (service !== '' && service !== PUBSUB_SERVICE_NAME) return ServingStatus.SERVICE_UNKNOWN;
    return serving() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  function responseFrame(status: ServingStatus): Buffer {
    return frameMessage(
      toBinary(HealthCheckResponseSchema, create(HealthCheckResponseSchema, { status })),
    );
  }

  function onRequest(stream: ServerStream, path: string, message: Buffer): void {
    let service = '';
    if (path !== HEALTH_LIST_PATH) {
      try {
        service = fromBinary(HealthCheckRequestSchema, message).service;
      } catch {
        stream.respondTrailersOnly({
          code: GrpcStatus.INVALID_ARGUMENT,
          message: 'malformed HealthCheckRequest',
        });
        return;
      }
    }
    const status = statusOf(service);
    if (path === HEALTH_CHECK_PATH) {
      if (status === ServingStatus.SERVICE_UNKNOWN) {
        stream.respondTrailersOnly({
          code: GrpcStatus.NOT_FOUND,
          message: `unknown service ${service}`,
        });
        return;
      }
      stream.sendHeaders();
      stream.end(OK, responseFrame(status));
    } else if (path === HEALTH_LIST_PATH) {
      const statuses: Record<string, { status: ServingStatus }> = {};
      for (const s of ['', PUBSUB_SERVICE_NAME]) statuses[s] = { status: statusOf(s) };
      stream.sendHeaders();
      stream.end(
        OK,
        frameMessage(
          toBinary(HealthListResponseSchema, create(HealthListResponseSchema, { statuses })),
        ),
      );
    } else {
      stream.sendHeaders();
      stream.write(responseFrame(status));
      watchers.set(stream, { service, last: status });
      stream.onClose(() => watchers.delete(stream));
    }
  }

  return {
    handle(stream, path) {
      const decoder = createFrameDecoder(MAX_HEALTH_REQUEST_BYTES);
      let got = false;
      stream.listen({
        data(chunk) {
          if (got) return;
          const err = decoder.push(chunk, (message) => {
            if (got) return;
            got = true;
            onRequest(stream, path, message);
          });
          if (err !== undefined && !got) {
            got = true;
            stream.respondTrailersOnly({
              code:
                err.code === 'compressed' ? GrpcStatus.UNIMPLEMENTED : GrpcStatus.INVALID_ARGUMENT,
              message: `bad health request frame: ${err.code}`,
            });
          }
        },
        end() {
          if (!got) {
            // A unary call with no message at all.
            got = true;
            stream.respondTrailersOnly({
              code: GrpcStatus.INVALID_ARGUMENT,
              message: 'health request carried no message',
            });
          }
        },
      });
    },
    notify() {
      for (const [stream, w] of watchers) {
        const now = statusOf(w.service);
        if (now !== w.last && !stream.closed) {
          w.last = now;
          stream.write(responseFrame(now));
        }
      }
    },
    endAll() {
      for (const stream of watchers.keys()) {
        stream.end({ code: GrpcStatus.UNAVAILABLE, message: 'broker closed' });
      }
      watchers.clear();
    },
  };
}
