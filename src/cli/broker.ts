/**
 * `persist-pubsub broker`: runs the sidecar broker with its admin HTTP server (issue 3,
 * "Operations").
 *
 * Lifecycle: validate every flag and read every file first (a problem exits 2 naming the flag,
 * before any port is bound); start the gRPC server, then the admin server; log one line
 * `broker listening` with both bound addresses (`grpc`, `admin` as `host:port`). Runtime flags
 * come from `--forward-pushes`, overlaid by `--flags-file`, which is reloaded when it changes
 * and on SIGHUP; so is `--auth-tokens-file` (scoped tokens).
 *
 * Shutdown: the first SIGTERM or SIGINT starts a graceful drain. `/readyz` answers 503 at once
 * (load balancers stop routing here), the broker stops accepting, sends GOAWAY and closes what
 * is left at `--drain-deadline-ms`, or sooner once the last client stream is gone (the NATS
 * bridge's own connection does not count; the bridge closes after); the process then exits 0. A second signal during the drain
 * destroys every connection and exits 1 at once; so does a drain that overruns its deadline by
 * `DRAIN_GRACE_MS`.
 */
import { type Command, Option } from 'commander';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import {
  type AdminServer,
  type Broker,
  type BrokerOptions,
  createAdminServer,
  createBroker,
  createNatsBridge,
  formatListenAddress,
  type ListenAddress,
  type NatsBridge,
} from '../broker/index.js';
import {
  addBrokerOptions,
  type BrokerCliConfig,
  type RawBrokerOptions,
  resolveBrokerConfig,
} from './config/broker-options.js';
import { createCliLogger } from './config/cli-logger.js';
import { ConfigError, EXIT_USAGE } from './config/config-error.js';
import { type BrokerFlagsFileWatcher, watchBrokerFlagsFile } from './config/flags-file.js';
import { type TokensFileWatcher, watchTokensFile } from './config/tokens-file.js';

/** How long past the drain deadline the process waits before forcing its exit, in ms. */
export const DRAIN_GRACE_MS = 2_000;
/** How long the admin server may take to finish in-flight requests at the end, in ms. */
export const ADMIN_CLOSE_TIMEOUT_MS = 1_000;

/** What the running process needs from its surroundings; injectable for tests. */
export interface BrokerProcessDeps {
  createBroker: (options: BrokerOptions) => Broker<ListenAddress>;
  logger: Logger;
  /** Where SIGTERM, SIGINT and SIGHUP come from. @default process */
  signals?: Pick<NodeJS.Process, 'on' | 'off'> | undefined;
  /** Monotonic clock in ms, for the drain duration log. @default performance.now */
  now?: (() => number) | undefined;
  /** How long past the drain deadline to wait before forcing, in ms. @default DRAIN_GRACE_MS */
  drainGraceMs?: number | undefined;
}

/** The running broker process. */
export interface BrokerProcess {
  readonly broker: Broker<ListenAddress>;
  readonly admin: AdminServer;
  /** Phase of the process, one tagged state. */
  readonly phase: 'serving' | 'draining' | 'stopped';
  /** Resolves with the exit code once the process is done (drained, forced or failed). */
  readonly exited: Promise<number>;
  /** Reads the flags file now (SIGHUP does this and `reloadTokens`). */
  reloadFlags(): Promise<void>;
  /** Reads the tokens file now. */
  reloadTokens(): Promise<void>;
}

/**
 * Starts the broker and the admin server from a resolved configuration and wires signals.
 * Throws (with nothing left running) if either cannot start.
 */
export async function startBrokerProcess(
  config: BrokerCliConfig,
  deps: BrokerProcessDeps,
): Promise<BrokerProcess> {
  const { logger } = deps;
  const signals = deps.signals ?? process;
  const now = deps.now ?? (() => performance.now());
  const registry = new Registry();
  const broker = deps.createBroker({ ...config.broker, logger, registry });
  const admin = createAdminServer({ broker, listen: config.adminListen, logger });

  let phase: BrokerProcess['phase'] | 'starting' = 'starting';
  // A stop signal during start-up is held and acted on once serving (an orchestrator may
  // send SIGTERM at any moment; Node's default would kill the process without a drain).
  let pendingStop: NodeJS.Signals | undefined;
  let onStop = (signal: NodeJS.Signals) => {
    pendingStop = signal;
  };
  let onHup = () => {};
  const stopListener = (signal: NodeJS.Signals) => onStop(signal);
  const hupListener = () => onHup();
  const uninstall = () => {
    signals.off('SIGTERM', stopListener);
    signals.off('SIGINT', stopListener);
    signals.off('SIGHUP', hupListener);
  };
  signals.on('SIGTERM', stopListener);
  signals.on('SIGINT', stopListener);
  signals.on('SIGHUP', hupListener);

  try {
    await broker.start();
    await admin.start();
  } catch (err) {
    uninstall();
    admin.destroy();
    broker.destroy();
    throw err;
  }

  let watcher: BrokerFlagsFileWatcher | undefined;
  if (config.flagsFile !== undefined) {
    watcher = watchBrokerFlagsFile({
      path: config.flagsFile.path,
      base: config.baseFlags,
      initialText: config.flagsFile.text,
      apply: (flags) => broker.setFlags(flags),
      logger,
    });
    // The watcher's first read (synchronous) catches a change made since the start-up read.
  }
  let tokensWatcher: TokensFileWatcher | undefined;
  if (config.tokensFile !== undefined) {
    tokensWatcher = watchTokensFile({
      path: config.tokensFile.path,
      initialText: config.tokensFile.text,
      apply: (tokens) => broker.setTokens(tokens),
      logger,
      registry,
    });
  }

  logger.info(
    {
      grpc: formatListenAddress(broker.address),
      admin: formatListenAddress(admin.address),
      tls: config.broker.tls === undefined ? 'off' : config.broker.tls.clientCa ? 'mtls' : 'tls',
      auth:
        [
          config.broker.authToken === undefined ? [] : ['bearer'],
          config.broker.tokens === undefined ? [] : [`tokens(${config.broker.tokens.length})`],
        ]
          .flat()
          .join('+') || 'none',
      tokensFile: config.tokensFile?.path,
      flags: broker.flags,
      flagsFile: config.flagsFile?.path,
    },
    'broker listening',
  );

  phase = 'serving';
  let forceTimer: NodeJS.Timeout | undefined;
  let resolveExit!: (code: number) => void;
  const exited = new Promise<number>((resolve) => {
    resolveExit = resolve;
  });

  const finish = (code: number) => {
    if (phase === 'stopped') return;
    phase = 'stopped';
    if (forceTimer !== undefined) clearTimeout(forceTimer);
    watcher?.close();
    tokensWatcher?.close();
    uninstall();
    resolveExit(code);
  };

  const force = (why: string) => {
    logger.warn({ why }, 'closing every connection now');
    broker.destroy();
    admin.destroy();
    finish(1);
  };

  const drain = async (signal: string) => {
    const started = now();
    const deadlineMs = config.drainDeadlineMs;
    admin.markDraining();
    watcher?.close();
    tokensWatcher?.close();
    logger.info({ signal, deadlineMs }, 'draining: stop accepting, GOAWAY, close at the deadline');
    // Deliberately not unref()'d: this timer is what guarantees the process exits.
    forceTimer = setTimeout(
      () => force('drain overran its deadline'),
      deadlineMs + (deps.drainGraceMs ?? DRAIN_GRACE_MS),
    );
    try {
      await broker.close({ deadlineMs });
      await admin.close({ signal: AbortSignal.timeout(ADMIN_CLOSE_TIMEOUT_MS) });
    } catch (err) {
      logger.error({ err }, 'drain failed');
      force('drain failed');
      return;
    }
    if (phase !== 'draining') return;
    logger.info({ durationMs: Math.round(now() - started) }, 'broker stopped');
    finish(0);
  };

  onStop = (signal) => {
    if (phase === 'serving') {
      phase = 'draining';
      void drain(signal);
    } else if (phase === 'draining') {
      force(`second signal ${signal} during the drain`);
    }
  };
  onHup = () => {
    if (watcher === undefined && tokensWatcher === undefined) {
      logger.info('SIGHUP: no --flags-file or --auth-tokens-file to reload');
    }
    void watcher?.reload();
    void tokensWatcher?.reload();
  };
  if (pendingStop !== undefined) onStop(pendingStop);

  return {
    broker,
    admin,
    get phase() {
      return phase as BrokerProcess['phase'];
    },
    exited,
    reloadFlags: () => watcher?.reload() ?? Promise.resolve(),
    reloadTokens: () => tokensWatcher?.reload() ?? Promise.resolve(),
  };
}

/** `--bridge` and `--bridge-subject-prefix` (the NATS bridge, README "Topologies"). */
interface RawBridgeOptions {
  bridge?: string | undefined;
  bridgeSubjectPrefix?: string | undefined;
}

function bridgeFromFlags(raw: RawBridgeOptions, logger?: Logger): NatsBridge | undefined {
  if (raw.bridge === undefined) {
    if (raw.bridgeSubjectPrefix !== undefined) {
      throw new ConfigError('--bridge-subject-prefix', '--bridge-subject-prefix needs --bridge');
    }
    return undefined;
  }
  try {
    return createNatsBridge({ url: raw.bridge, subjectPrefix: raw.bridgeSubjectPrefix, logger });
  } catch (err) {
    throw new ConfigError('--bridge', `--bridge: ${(err as Error).message}`);
  }
}

/** Registers `persist-pubsub broker` on the program. */
export function registerBroker(program: Command): void {
  const command = program
    .command('broker')
    .description(
      'run the pubsub broker: gRPC ProtoPersistPubSub on --listen, admin HTTP on --admin-listen',
    )
    .addHelpText(
      'after',
      `
Every flag can also be set by the environment variable shown; a flag wins over its variable.
The bearer token can be given as the token itself in PERSIST_PUBSUB_AUTH_TOKEN.
Signals: SIGTERM/SIGINT drain gracefully (exit 0), a second one exits at once (exit 1);
SIGHUP reloads --flags-file and --auth-tokens-file. Exit code 2: invalid flags or unreadable files.`,
    )
    // A usage error (bad or unknown flag, bad environment value) exits 2; --help exits 0.
    .exitOverride((err) => {
      process.exit(err.exitCode === 0 ? 0 : EXIT_USAGE);
    });
  addBrokerOptions(command);
  command.addOption(
    new Option(
      '--bridge <url>',
      'bridge this broker to others through NATS (nats://host:port, comma-separated for a cluster); see README "Topologies"',
    ).env('PERSIST_PUBSUB_BRIDGE'),
  );
  command.addOption(
    new Option(
      '--bridge-subject-prefix <prefix>',
      'NATS subject prefix shared by bridged brokers and NATS clients (default persist-pubsub.v1.shard)',
    ).env('PERSIST_PUBSUB_BRIDGE_SUBJECT_PREFIX'),
  );
  command.action(async (raw: RawBrokerOptions & RawBridgeOptions) => {
    let config: BrokerCliConfig;
    try {
      config = await resolveBrokerConfig(raw);
      bridgeFromFlags(raw); // validates --bridge*; connects nothing
    } catch (err) {
      if (err instanceof ConfigError) {
        console.error(`persist-pubsub broker: ${err.message}`);
        process.exit(EXIT_USAGE);
      }
      throw err;
    }
    const logger = createCliLogger({
      level: config.logLevel,
      format: config.logFormat,
      name: 'persist-pubsub-broker',
    });
    const bridge = bridgeFromFlags(raw, logger);
    let running: BrokerProcess;
    try {
      running = await startBrokerProcess(config, {
        createBroker: (o) => createBroker({ ...o, observer: bridge?.observer }),
        logger,
      });
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      logger.fatal({ err }, 'broker could not start');
      const message = err instanceof Error ? err.message : String(err);
      // Invalid options are a usage error (2); a port in use or similar is a failure (1).
      const invalid = code === 'invalid_argument';
      console.error(`persist-pubsub broker: ${invalid ? '' : 'cannot start: '}${message}`);
      process.exit(invalid ? EXIT_USAGE : 1);
    }
    if (bridge !== undefined) {
      const b = bridge;
      // Never blocks serving: local clients work while NATS is unreachable; nats.js retries.
      void b
        .start(running.broker)
        .then(() => logger.info({ brokerId: b.brokerId, url: raw.bridge }, 'nats bridge connected'))
        .catch((err: unknown) => logger.error({ err }, 'nats bridge failed to start'));
    }
    const code = await running.exited;
    await bridge?.close();
    process.exit(code);
  });
}
