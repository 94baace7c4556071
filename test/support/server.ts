import { spawn, type ChildProcess } from 'node:child_process';
import { ROOT, cliEnv } from './cli.js';

export interface RunningServer {
  url: string;
  process: ChildProcess;
  output: () => string;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts `celforge serve` (or another long-running command) as a real process on a free port. */
export function startServer(
  storage: { dataDir: string; databaseUrl?: string },
  options: { args?: string[]; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/cli.ts', ...(options.args ?? ['serve'])], {
    cwd: ROOT,
    env: cliEnv(storage, { CELFORGE_PORT: '0', ...options.env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const stop = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    return exited;
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start:\n${output}`));
    }, options.timeoutMs ?? 90_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      // `celforge listening on …` when the log is silent, pino's `Server listening at …` otherwise
      const match = /(?:listening on|Server listening at) (http:\/\/[^\s"]+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ url: match[1]!, process: child, output: () => output, stop });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}:\n${output}`));
    });
  });
}
