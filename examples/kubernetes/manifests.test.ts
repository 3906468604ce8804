/**
 * The Kubernetes example (`broker.yaml`) against the real CLI: it parses, the headless Service
 * routes port 6879 to the broker's gRPC container port, two replicas replaced one at a time and
 * kept one by the disruption budget (the SDK given the name streams to each), the probes hit the admin port's
 * /readyz and /healthz, every argument is a flag `persist-pubsub broker --help` lists, the
 * grace period outlasts the drain, and the broker actually starts with these arguments (on
 * free loopback ports instead of 0.0.0.0) and answers both probes.
 */
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', '..', 'dist', 'src', 'cli', 'main.js');

interface Port {
  name: string;
  containerPort: number;
}
interface Probe {
  httpGet: { path: string; port: string | number };
}
interface Container {
  command?: string[];
  args: string[];
  ports: Port[];
  readinessProbe: Probe;
  livenessProbe: Probe;
}
type Labels = Record<string, string>;

const docs = parseAllDocuments(readFileSync(join(here, 'broker.yaml'), 'utf8'));
const objects = docs.map((d) => {
  expect(d.errors).toEqual([]);
  return d.toJS() as { kind: string; metadata: { name: string }; spec: Record<string, unknown> };
});
const service = objects.find((o) => o.kind === 'Service') as unknown as {
  metadata: { name: string };
  spec: {
    clusterIP: string;
    selector: Labels;
    ports: { name: string; port: number; targetPort: string | number }[];
  };
};
const deployment = objects.find((o) => o.kind === 'Deployment') as unknown as {
  spec: {
    replicas: number;
    strategy: { type: string; rollingUpdate: { maxSurge: number; maxUnavailable: number } };
    selector: { matchLabels: Labels };
    template: {
      metadata: { labels: Labels };
      spec: { terminationGracePeriodSeconds: number; containers: Container[] };
    };
  };
};
const container = deployment?.spec.template.spec.containers[0] as Container;
const budget = objects.find((o) => o.kind === 'PodDisruptionBudget') as unknown as {
  spec: { minAvailable: number; selector: { matchLabels: Labels } };
};

/** `--name=value` (or `--name value`) arguments as a map. */
function flags(args: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (!a.startsWith('--')) continue;
    const eq = a.indexOf('=');
    if (eq > 0) out.set(a.slice(0, eq), a.slice(eq + 1));
    else out.set(a, args[++i] ?? '');
  }
  return out;
}

const portOf = (hostPort: string | undefined) =>
  Number(hostPort?.slice(hostPort.lastIndexOf(':') + 1));
const containerPort = (ref: string | number) =>
  typeof ref === 'number' ? ref : container.ports.find((p) => p.name === ref)?.containerPort;
const subset = (a: Labels, b: Labels) => Object.entries(a).every(([k, v]) => b[k] === v);

describe('examples/kubernetes/broker.yaml', () => {
  it('has a headless Service on 6879 routing to the broker pods', () => {
    expect(objects.map((o) => o.kind).sort()).toEqual([
      'Deployment',
      'PodDisruptionBudget',
      'Service',
    ]);
    expect(service.spec.clusterIP).toBe('None');
    const grpc = service.spec.ports.find((p) => p.name === 'grpc');
    expect(grpc?.port).toBe(6879);
    expect(containerPort(grpc?.targetPort ?? '')).toBe(6879);
    const podLabels = deployment.spec.template.metadata.labels;
    expect(subset(service.spec.selector, podLabels)).toBe(true);
    expect(subset(deployment.spec.selector.matchLabels, podLabels)).toBe(true);
  });

  it('runs two replicas, replaced one at a time, at least one kept through a drain', () => {
    expect(deployment.spec.replicas).toBe(2);
    expect(deployment.spec.strategy).toEqual({
      type: 'RollingUpdate',
      rollingUpdate: { maxSurge: 1, maxUnavailable: 0 },
    });
    expect(budget.spec.minAvailable).toBe(1);
    expect(budget.spec.minAvailable).toBeLessThan(deployment.spec.replicas);
    expect(subset(budget.spec.selector.matchLabels, deployment.spec.template.metadata.labels)).toBe(
      true,
    );
  });

  it('listens where the ports and probes say, with flags the CLI has', () => {
    // The image's entrypoint is the CLI (checked against the Dockerfile by test/package.test.ts).
    expect(container.command).toBeUndefined();
    expect(container.args[0]).toBe('broker');
    const f = flags(container.args);
    expect(portOf(f.get('--listen'))).toBe(containerPort('grpc'));
    expect(portOf(f.get('--admin-listen'))).toBe(containerPort('admin'));
    expect(container.readinessProbe.httpGet.path).toBe('/readyz');
    expect(container.livenessProbe.httpGet.path).toBe('/healthz');
    for (const p of [container.readinessProbe, container.livenessProbe]) {
      expect(containerPort(p.httpGet.port)).toBe(portOf(f.get('--admin-listen')));
    }
    const help = execFileSync(process.execPath, [cli, 'broker', '--help'], { encoding: 'utf8' });
    for (const name of f.keys()) expect(help, `${name} in broker --help`).toContain(`${name} <`);
    // The kubelet's SIGKILL must come after the drain deadline and the broker's 2 s grace.
    const drainMs = Number(f.get('--drain-deadline-ms'));
    expect(drainMs).toBeGreaterThan(0);
    expect(deployment.spec.template.spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(
      drainMs + 2000,
    );
  });

  it('starts the broker with these arguments and answers both probes', async () => {
    const args = container.args.map((a) =>
      a.startsWith('--listen=') || a.startsWith('--admin-listen=')
        ? `${a.slice(0, a.indexOf('=') + 1)}127.0.0.1:0`
        : a,
    );
    const child = spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
      let admin: string | undefined;
      while (admin === undefined) {
        const next = await lines.next();
        if (next.done) throw new Error('the broker exited before listening');
        const line = JSON.parse(next.value) as { msg?: string; admin?: string };
        if (line.msg === 'broker listening') admin = line.admin;
      }
      for (const probe of [container.readinessProbe, container.livenessProbe]) {
        const res = await fetch(`http://${admin}${probe.httpGet.path}`);
        expect(res.status).toBe(200);
      }
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
