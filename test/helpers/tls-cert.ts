import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

export interface SelfSigned {
  certFile: string;
  keyFile: string;
  /** The certificate's PEM: also the CA a client trusts. */
  cert: string;
  key: string;
}

/** Why the `openssl` CLI cannot make test certificates here, or '' when it can. Fails loudly where every component is required. */
export const opensslMissing = ((): string => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return '';
  } catch {
    const why = 'the openssl CLI is not installed (Debian package "openssl")';
    if (process.env.OMNIPUSH_REQUIRE_ALL === '1') throw new Error(`${why}, and OMNIPUSH_REQUIRE_ALL=1 requires it`);
    console.error(`\n*** SKIPPING TLS tests: ${why} ***\n`);
    return 'openssl missing';
  }
})();

/** A fresh self-signed P-256 certificate for 127.0.0.1 and localhost, written into `dir`. */
export function selfSignedCert(dir: string): SelfSigned {
  const keyFile = join(dir, 'key.pem');
  const certFile = join(dir, 'cert.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile, cert: readFileSync(certFile, 'utf8'), key: readFileSync(keyFile, 'utf8') };
}
