# The persist-pubsub image: the CLI (`persist-pubsub broker`, `shards`, `tail`, ...) on Node 20.
#
#   docker build -t persist-pubsub:0.1.0 .
#   docker run --rm -p 6879:6879 -p 6880:6880 persist-pubsub:0.1.0
#
# Three stages: `build` compiles TypeScript and packs the package exactly as `npm pack` does for
# users; `deps` installs the production dependencies only (`npm ci --omit=dev`, with a compiler
# at hand in case better-sqlite3 has no prebuilt binary for the platform); the runtime stage is
# node:20-slim with the packed files and those dependencies, run as the non-root `node` user.
# Checked by test/package.test.ts (every path below against the packed package, the entrypoint
# against package.json "bin", and the package installed with --omit=dev serving a client).

FROM node:20-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY src ./src
RUN npx tsc -p tsconfig.build.json \
 && npm pack --pack-destination /tmp \
 && mkdir /pkg \
 && tar xzf /tmp/persist-pubsub-*.tgz -C /pkg --strip-components=1

FROM node:20-slim AS deps
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund

FROM node:20-slim
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /pkg/ ./
USER node
# gRPC (ProtoPersistPubSub, health, reflection) and admin HTTP (/metrics, /healthz, /readyz).
EXPOSE 6879 6880
ENTRYPOINT ["node", "/app/dist/src/cli/main.js"]
CMD ["broker", "--listen=0.0.0.0:6879", "--admin-listen=0.0.0.0:6880"]
