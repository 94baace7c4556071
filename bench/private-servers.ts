/**
 * A Redis and a PostgreSQL of the chaos run's own, in temporary directories on free loopback ports,
 * so they can be stopped and started for real without touching the shared servers.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chownSync, mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir, userInfo } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import pg from 'pg';
import { postgresAnswers } from '../test/support/postgres-probe.js';

const REDIS_SERVER = process.env.CHAOS_REDIS_SERVER ?? '/usr/bin/redis-server';
const POSTGRES_BIN = process.env.CHAOS_POSTGRES_BIN ?? '/usr/lib/postgresql/15/bin';

export interface PrivateServer {
  url: string;
  /** stops the server the way an operator's restart does (Redis: SIGTERM; PostgreSQL: fast shutdown) */
  stop(): Promise<void>;
  /** starts it again on the same port and data, and waits until it answers */
  start(): Promise<void>;
  /** stops it and removes its files */
  destroy(): Promise<void>;
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

async function waitUntil(what: string, ready: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await ready())) {
    if (Date.now() > until) throw new Error(`${what} did not come up in ${timeoutMs / 1000} s`);
    await sleep(50);
  }
}

function answersTcp(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** redis-server with an append-only file, as a production Redis keeps its data across a restart. */
export async function startPrivateRedis(): Promise<PrivateServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'celforge-chaos-redis-'));
  const port = await freePort();
  let child: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  const start = async () => {
    child = spawn(
      REDIS_SERVER,
      ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--appendonly', 'yes', '--save', '', '--logfile', path.join(dir, 'redis.log')],
      { stdio: 'ignore' },
    );
    const running = child;
    exited = new Promise((resolve) => running.once('exit', () => resolve()));
    await waitUntil('redis-server', () => answersTcp(port));
  };
  const stop = async () => {
    child?.kill('SIGTERM');
    await exited;
    child = null;
  };
  await start();
  return {
    url: `redis://127.0.0.1:${port}`,
    start,
    stop,
    destroy: async () => {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * A PostgreSQL cluster made by initdb, with trust authentication on loopback. PostgreSQL refuses
 * to run as root, so as root its files belong to the `postgres` user and its commands run as that user.
 */
export async function startPrivatePostgres(): Promise<PrivateServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'celforge-chaos-pg-'));
  const asRoot = userInfo().uid === 0;
  if (asRoot) chownSync(dir, Number(execFileSync('id', ['-u', 'postgres']).toString()), Number(execFileSync('id', ['-g', 'postgres']).toString()));
  // not execFileSync: the load this run puts on Celforge must not pause while PostgreSQL stops and starts
  const run = async (tool: string, args: string[]) => {
    const command = path.join(POSTGRES_BIN, tool);
    await promisify(execFile)(asRoot ? 'runuser' : command, asRoot ? ['-u', 'postgres', '--', command, ...args] : args);
  };
  const data = path.join(dir, 'data');
  const port = await freePort();
  await run('initdb', ['-D', data, '-A', 'trust', '-U', 'postgres', '-E', 'UTF8', '--no-sync']);
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off`;
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  const answers = () => postgresAnswers(url, 1000);
  const start = async () => {
    await run('pg_ctl', ['start', '-D', data, '-l', path.join(dir, 'postgres.log'), '-o', options, '-w']);
    await waitUntil('postgres', answers);
  };
  // fast: every session ended, then a clean shutdown, as `systemctl restart postgresql` does
  const stop = async () => run('pg_ctl', ['stop', '-D', data, '-m', 'fast', '-w']);
  await start();
  return {
    url,
    start,
    stop,
    destroy: async () => {
      await stop().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A database of its own on a private PostgreSQL, named by `name`. */
export async function createDatabase(server: PrivateServer, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: server.url });
  await client.connect();
  try {
    await client.query(`create database ${name}`);
  } finally {
    await client.end();
  }
  const url = new URL(server.url);
  url.pathname = `/${name}`;
  return url.toString();
}
