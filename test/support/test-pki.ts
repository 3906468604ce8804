/**
 * Throwaway certificates for TLS tests, made per run with the `openssl` CLI in a temporary
 * folder: `ca(name)` makes a self-signed CA, `leaf(name, signer, san?)` a certificate signed by
 * it (with subjectAltName when given). Files are `<name>.crt` and `<name>.key` in `dir`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TestPki {
  readonly dir: string;
  /** The path of a file in the folder, e.g. `path('server.crt')`. */
  path(file: string): string;
  /** A PEM file's contents, e.g. `pem('ca.crt')`. */
  pem(file: string): string;
  ca(name: string): void;
  leaf(name: string, signer: string, san?: string): void;
  /** Removes the folder. */
  remove(): void;
}

export function createTestPki(prefix: string): TestPki {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const key = (name: string) => ['-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`];
  return {
    dir,
    path: (file) => join(dir, file),
    pem: (file) => readFileSync(join(dir, file), 'utf8'),
    ca(name) {
      ssl(
        'req',
        '-x509',
        ...key(name),
        '-days',
        '2',
        '-subj',
        `/CN=${name}`,
        '-out',
        `${name}.crt`,
      );
    },
    leaf(name, signer, san) {
      ssl('req', ...key(name), '-subj', `/CN=${name}`, '-out', `${name}.csr`);
      const sign = ['x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.crt`];
      sign.push('-CAkey', `${signer}.key`, '-CAcreateserial', '-days', '2', '-out', `${name}.crt`);
      if (san !== undefined) {
        writeFileSync(join(dir, `${name}.ext`), `subjectAltName=${san}\n`);
        sign.push('-extfile', `${name}.ext`);
      }
      ssl(...sign);
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
