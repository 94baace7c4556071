import { execFileSync } from 'node:child_process';

/** The suite tests the studio as built: build it once before the workers start their servers. */
export default function globalSetup() {
  if (process.env.CELFORGE_E2E_SKIP_BUILD === '1') return;
  execFileSync('npm', ['run', 'build', '--silent', '-w', 'web'], { stdio: 'inherit' });
}
