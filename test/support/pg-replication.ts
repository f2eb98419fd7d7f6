/**
 * A primary and a streaming standby on loopback, from the system's PostgreSQL binaries (Debian's
 * `postgresql-15`: initdb, pg_ctl, pg_basebackup), for failover tests. As root, the servers run as
 * the `postgres` user (PostgreSQL refuses root) in a directory under the system's temporary folder
 * owned by that user.
 */
import { execFile } from "node:child_process";
import { existsSync, readdirSync } from "node:fs";
import { appendFile, chmod, chown, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { freePort } from "../../src/store/embedded.js";

const run = promisify(execFile);

const TOOLS = ["initdb", "pg_ctl", "pg_basebackup", "postgres"];

/** The bin directory of the newest /usr/lib/postgresql/<major> with every tool, or null. */
export function systemPostgresBin(): string | null {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  const majors = readdirSync(base)
    .filter((d) => /^\d+$/.test(d))
    .sort((a, b) => Number(b) - Number(a));
  for (const major of majors) {
    const bin = path.join(base, major, "bin");
    if (TOOLS.every((t) => existsSync(path.join(bin, t)))) return bin;
  }
  return null;
}

/** One server of the pair. */
export interface ReplicaServer {
  readonly name: string;
  readonly port: number;
  readonly dataDir: string;
}

/** A primary, a streaming standby of it, and the commands a failover needs. */
export interface ReplicationPair {
  readonly primary: ReplicaServer;
  readonly standby: ReplicaServer;
  /** postgresql://postgres@127.0.0.1:P1,127.0.0.1:P2/<database>?target_session_attrs=read-write */
  url(database: string): string;
  /** pg_ctl stop with `mode` (fast: WAL shipped to the standby first; immediate: a crash). */
  stop(server: ReplicaServer, mode: "fast" | "immediate"): Promise<void>;
  /** pg_ctl promote (waits until the standby takes writes). */
  promote(server: ReplicaServer): Promise<void>;
  /** Stop both servers (whatever state they are in) and remove their directory. */
  destroy(): Promise<void>;
}

/**
 * Start a primary (wal_level=replica) and a standby made by pg_basebackup -R, each on a free port.
 * `synchronous`: the primary's commits wait until the standby has flushed them
 * (synchronous_standby_names = '*'), so a commit acknowledged survives a crash of the primary.
 */
export async function startReplicationPair(
  bin: string,
  options: { synchronous?: boolean } = {},
): Promise<ReplicationPair> {
  const root = process.getuid?.() === 0;
  const ids = root ? await postgresIds() : undefined;
  const dir = await mkdtemp(path.join(os.tmpdir(), "kiteq-failover-"));
  await chmod(dir, 0o755);
  if (ids) await chown(dir, ids.uid, ids.gid);
  const as = (tool: string, args: string[]) =>
    root
      ? run("runuser", ["-u", "postgres", "--", path.join(bin, tool), ...args], { timeout: 60_000 })
      : run(path.join(bin, tool), args, { timeout: 60_000 });
  const server = async (name: string): Promise<ReplicaServer> => ({
    name,
    port: await freePort(),
    dataDir: path.join(dir, name),
  });
  const primary = await server("primary");
  const standby = await server("standby");
  const started: ReplicaServer[] = [];
  const conf = async (s: ReplicaServer, lines: string[]) => {
    const file = path.join(s.dataDir, "postgresql.conf");
    await appendFile(file, `\n${lines.join("\n")}\n`);
    if (ids) await chown(file, ids.uid, ids.gid);
  };
  const start = async (s: ReplicaServer) => {
    await as("pg_ctl", ["-D", s.dataDir, "-l", path.join(dir, `${s.name}.log`), "-w", "-t", "60", "start"]);
    started.push(s);
  };
  const pair: ReplicationPair = {
    primary,
    standby,
    url: (database) =>
      `postgresql://postgres@127.0.0.1:${primary.port},127.0.0.1:${standby.port}/${database}?target_session_attrs=read-write`,
    async stop(s, mode) {
      await as("pg_ctl", ["-D", s.dataDir, "-m", mode, "-w", "-t", "60", "stop"]);
    },
    async promote(s) {
      await as("pg_ctl", ["-D", s.dataDir, "-w", "-t", "60", "promote"]);
    },
    async destroy() {
      for (const s of started) {
        await as("pg_ctl", ["-D", s.dataDir, "-m", "immediate", "-w", "stop"]).catch(() => undefined);
      }
      await rm(dir, { recursive: true, force: true });
    },
  };
  try {
    await as("initdb", [
      "-D",
      primary.dataDir,
      "-U",
      "postgres",
      "-A",
      "trust",
      "-E",
      "UTF8",
      "--locale=C",
      "--no-sync",
    ]);
    // initdb's pg_hba.conf already lets local and loopback replication connections in (trust).
    const common = [
      "listen_addresses = '127.0.0.1'",
      `unix_socket_directories = '${dir}'`,
      "wal_level = replica",
      "max_wal_senders = 4",
      "hot_standby = on",
      "max_connections = 100",
      "shared_buffers = 16MB",
      "jit = off",
    ];
    await conf(primary, [`port = ${primary.port}`, ...common]);
    await start(primary);
    await as("pg_basebackup", [
      "-h",
      "127.0.0.1",
      "-p",
      String(primary.port),
      "-U",
      "postgres",
      "-D",
      standby.dataDir,
      "-R",
      "-X",
      "stream",
      "--checkpoint=fast",
      "--no-sync",
    ]);
    // Once promoted, the standby must not wait for a standby of its own.
    await conf(standby, [`port = ${standby.port}`, "synchronous_standby_names = ''"]);
    await start(standby);
    // Set once the standby streams (the base backup's own writes must not wait for one).
    if (options.synchronous) {
      await conf(primary, ["synchronous_standby_names = '*'", "synchronous_commit = on"]);
      await as("pg_ctl", ["-D", primary.dataDir, "-w", "reload"]);
    }
    return pair;
  } catch (err) {
    await pair.destroy();
    const stderr = (err as { stderr?: string }).stderr;
    throw new Error(
      `replication pair did not start: ${(err as Error).message}${stderr ? `\n${stderr}` : ""}`,
    );
  }
}

async function postgresIds(): Promise<{ uid: number; gid: number }> {
  const { stdout } = await run("id", ["-u", "postgres"]).catch(() => {
    throw new Error("running as root, PostgreSQL needs a postgres user (useradd --system postgres)");
  });
  const gid = await run("id", ["-g", "postgres"]);
  return { uid: Number(stdout.trim()), gid: Number(gid.stdout.trim()) };
}
