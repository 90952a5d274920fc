import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tempDir } from './config.ts';

function opensslWorks(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Whether openssl can make the self-signed certificates of the HTTPS tests. On CI its absence is an error. */
export const hasOpenssl = opensslWorks();
if (!hasOpenssl && process.env.CI === 'true') throw new Error('openssl is needed for the HTTPS tests and is missing on this CI machine');

/** A self-signed P-256 certificate for localhost and 127.0.0.1, valid one day. */
export function selfSigned(): { certFile: string; keyFile: string } {
  const dir = tempDir('th-tls-');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  execFileSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost',
      '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', keyFile, '-out', certFile],
    { stdio: 'ignore' },
  );
  return { certFile, keyFile };
}
