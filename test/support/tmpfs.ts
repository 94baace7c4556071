import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** Whether this machine lets the tests mount a tmpfs (root in a sandbox that allows it). */
export const canMountTmpfs: boolean = (() => {
  const dir = mkdtempSync(path.join(tmpdir(), 'celforge-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir], { stdio: 'ignore' });
    execFileSync('umount', [dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
})();

/** A small tmpfs mounted at `dir` (made if missing): a disk that really fills up, and can turn read-only. */
export function mountTmpfs(dir: string, size: string) {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  const filler = path.join(dir, 'filler.bin');
  return {
    /** writes a file until the disk has no room left */
    fill(): void {
      try {
        writeFileSync(filler, Buffer.alloc(64 * 1024 * 1024));
      } catch {
        // ENOSPC: full, as intended
      }
    },
    free(): void {
      rmSync(filler, { force: true });
    },
    readOnly(on: boolean): void {
      execFileSync('mount', ['-o', `remount,${on ? 'ro' : 'rw'}`, dir]);
    },
    unmount(): void {
      execFileSync('umount', ['-l', dir]);
    },
  };
}
