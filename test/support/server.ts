import { spawn, type ChildProcess } from 'node:child_process';
import { ROOT, cliEnv } from './cli.js';

export interface RunningProcess {
  process: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

export interface RunningServer extends RunningProcess {
  url: string;
}

/** From the sources through tsx, or the built `dist/cli.js` (after `npm run build`), as `npm start` runs it. */
export type Entry = 'sources' | 'built';

const ENTRY_ARGS: Record<Entry, string[]> = { sources: ['--import', 'tsx', 'src/cli.ts'], built: ['dist/cli.js'] };

/**
 * Starts a long-running `celforge` command as a real process and resolves once its output matches
 * `ready` (with that match); fails if it exits first or takes longer than `timeoutMs`.
 */
export function startCelforge(
  storage: { dataDir: string; databaseUrl?: string },
  options: { args: string[]; env?: Record<string, string>; ready: RegExp; timeoutMs?: number; entry?: Entry },
): Promise<RunningProcess & { match: RegExpExecArray }> {
  const child = spawn(process.execPath, [...ENTRY_ARGS[options.entry ?? 'sources'], ...options.args], {
    cwd: ROOT,
    env: cliEnv(storage, options.env),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  const name = options.args[0];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${name} did not start:\n${output}`));
    }, options.timeoutMs ?? 90_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = options.ready.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ match, process: child, output: () => output, stop });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${output}`));
    });
  });
}

/** Starts `celforge serve` (or another serving command) as a real process on a free port. */
export async function startServer(
  storage: { dataDir: string; databaseUrl?: string },
  options: { args?: string[]; env?: Record<string, string>; timeoutMs?: number; entry?: Entry } = {},
): Promise<RunningServer> {
  const { match, ...running } = await startCelforge(storage, {
    entry: options.entry,
    args: options.args ?? ['serve'],
    env: { CELFORGE_PORT: '0', ...options.env },
    timeoutMs: options.timeoutMs,
    // `celforge listening on …` when the log is silent, pino's `Server listening at …` otherwise
    ready: /(?:listening on|Server listening at) (http:\/\/[^\s"]+)/,
  });
  return { url: match[1]!, ...running };
}
