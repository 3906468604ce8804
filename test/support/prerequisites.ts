/**
 * Local prerequisites other than the loopback services: an independent gRPC peer (Python
 * grpcio), system commands (`unshare`, `openssl`, `redis-server`, `initdb`). The rule is the
 * services' rule (`services.ts`): locally, a test whose prerequisite is missing is skipped with
 * one loud line that names what is missing and how to get it; under `CI=true` a missing
 * prerequisite fails the suite, because CI must never pass a skipped suite off as green.
 *
 *   const python = requirePrerequisite(PYTHON_GRPCIO);
 *   it.skipIf(!python)('...', ...);
 */
import { spawnSync } from 'node:child_process';

export interface Prerequisite {
  /** What is missing, as the skip line names it. */
  name: string;
  /** How a developer gets it (a command to run). */
  install: string;
  /** True if it is there; called once per process. */
  probe(): boolean;
}

/** Exits 0 when `command args…` runs (within 10 s); never throws. */
export function runs(command: string, args: string[]): boolean {
  const r = spawnSync(command, args, { stdio: 'ignore', timeout: 10_000 });
  return r.error === undefined && r.status === 0;
}

/**
 * The interpreter that runs the Python grpcio peer (`test/fixtures/python/`). Debian's
 * `python3-grpcio` installs into the system interpreter; `PERSIST_PUBSUB_TEST_PYTHON` points
 * elsewhere (CI uses it to check that the suite passes, loudly skipping, without the peer).
 */
export const PYTHON = process.env.PERSIST_PUBSUB_TEST_PYTHON ?? '/usr/bin/python3';

export const PYTHON_GRPCIO: Prerequisite = {
  name: `the independent gRPC peer (Python grpcio, ${PYTHON} -c 'import grpc')`,
  install: 'apt-get install -y python3-grpcio',
  probe: () => runs(PYTHON, ['-c', 'import grpc']),
};

/** The line printed when a prerequisite is missing outside CI (exported for its test). */
export function skipLine(p: Prerequisite): string {
  return (
    `!!!!!!!! SKIPPING TESTS THAT NEED ${p.name}: it is missing. Install it with ` +
    `'${p.install}' to run them; under CI=true this is a failure. !!!!!!!!`
  );
}

const seen = new Map<string, boolean>();

/**
 * True if the prerequisite is present. If it is not: under `CI=true` this throws (the suite
 * fails); otherwise it prints the skip line once per process and returns false.
 */
export function requirePrerequisite(p: Prerequisite, env = process.env): boolean {
  let ok = seen.get(p.name);
  if (ok === undefined) {
    ok = p.probe();
    seen.set(p.name, ok);
    if (!ok && env.CI !== 'true') console.warn(`\n${skipLine(p)}\n`);
  }
  if (!ok && env.CI === 'true') {
    throw new Error(`${p.name} is missing and CI=true: its tests must run (${p.install})`);
  }
  return ok;
}

/** `unshare -n`: a private network namespace (the admin-port loopback check). */
export const UNSHARE_NET: Prerequisite = {
  name: "a private network namespace ('unshare -n', as root)",
  install: 'apt-get install -y util-linux, and run the tests as root',
  probe: () => runs('unshare', ['-n', 'true']),
};

/** The openssl command (throwaway certificates for TLS tests). */
export const OPENSSL: Prerequisite = {
  name: 'the openssl command',
  install: 'apt-get install -y openssl',
  probe: () => runs('openssl', ['version']),
};

/** redis-server and redis-cli (the private Redis cluster and the AOF restart tests). */
export const REDIS_BINARIES: Prerequisite = {
  name: 'redis-server and redis-cli on PATH',
  install: 'apt-get install -y redis-server',
  probe: () => runs('redis-server', ['--version']) && runs('redis-cli', ['--version']),
};

/** initdb run as the postgres user (a private Postgres cluster restarted -m immediate). */
export const POSTGRES_INITDB: Prerequisite = {
  name: 'initdb run as the postgres user (root, with PostgreSQL installed)',
  install: 'apt-get install -y postgresql, and run the tests as root',
  probe: () =>
    process.getuid?.() === 0 && runs('runuser', ['-u', 'postgres', '--', 'initdb', '--version']),
};
