// `npm test`: two vitest runs at once (plain Node, no dependencies beyond vitest and tsx).
//
// - The timing-sensitive files (vitest project "timing": takeover within a lease, redelivery
//   within ~1 s, p99 lateness under 1 s, handshake deadlines) run one at a time, at normal
//   priority, with their own PostgreSQL; so do a few files that mostly wait (vitest.config.ts's
//   WAITING), to even out the two runs.
// - Everything else (projects "unit" and "integration") runs two files at a time under
//   `nice -n 10`, with its own PostgreSQL: its brokers, CLIs, ZooKeepers and PostgreSQL inherit
//   the lower priority, so they take the CPU the timing files leave idle (most of theirs is
//   waiting on ZooKeeper sessions, leases and restarts) without delaying them.
// - Then the "quiet" files (a bound on a cold database round trip) alone.
//
// Why: one file at a time took 716-750 s here in a slow hour of this 2-core VM, over the
// 10-minute budget. `npx vitest run` alone still works: it runs the same projects one group
// after the other (vitest.config.ts).
//
// Arguments go to both runs (`npm test -- test/e2e/cli.test.ts`); with --project, one run with
// exactly those arguments.
import { spawn, spawnSync } from "node:child_process";
import { createInterface } from "node:readline";

const args = process.argv.slice(2);
const vitest = ["node_modules/vitest/vitest.mjs", "run"];

// Ctrl-C or SIGTERM goes to the runs in progress, and no further run starts.
const live = new Set();
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    interrupted = true;
    for (const child of live) child.kill(signal);
  });
}

function run(label, command, commandArgs, env) {
  const started = Date.now();
  let noFiles = false;
  const child = spawn(command, commandArgs, { env, stdio: ["ignore", "pipe", "pipe"] });
  live.add(child);
  child.once("exit", () => live.delete(child));
  // Whole lines only, so that the two runs' output never mixes within a line.
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream, crlfDelay: Number.POSITIVE_INFINITY }).on("line", (line) => {
      if (line.includes("No test files found")) noFiles = true;
      (stream === child.stderr ? process.stderr : process.stdout).write(`${line}\n`);
    });
  }
  const done = new Promise((resolve) => {
    child.once("error", (err) => {
      console.error(`run-tests: ${label}: could not start ${command}: ${err.message}`);
      resolve({ label, code: 1, seconds: 0, noFiles });
    });
    child.once("exit", (code, signal) =>
      resolve({
        label,
        code: code ?? (signal ? 1 : 0),
        seconds: Math.round((Date.now() - started) / 1000),
        noFiles,
      }),
    );
  });
  return { child, done };
}

if (args.includes("--project") || args.some((a) => a.startsWith("--project="))) {
  const { done } = run("vitest", process.execPath, [...vitest, ...args], process.env);
  process.exitCode = (await done).code;
} else {
  // Child processes of both runs execute .test-dist/ (test/support/built-src.ts): built here
  // once, so that the two runs never write it at the same time.
  const built = spawnSync(
    process.execPath,
    ["--import", "tsx", "-e", "await (await import('./test/support/built-src.ts')).buildSources()"],
    { stdio: "inherit" },
  );
  if (built.status !== 0) {
    console.error("run-tests: building .test-dist/ for the tests' child processes failed (see above)");
    process.exit(1);
  }
  const env = { ...process.env, TEST_KITEQ_DIST_BUILT: "1" };
  const started = Date.now();
  const runs = [
    run(
      "timing-sensitive and waiting files, one at a time",
      process.execPath,
      [...vitest, "--project", "timing", "--passWithNoTests", ...args],
      env,
    ),
    run(
      "other files, two at a time at nice 10",
      "nice",
      [
        "-n",
        "10",
        process.execPath,
        ...vitest,
        "--project",
        "unit",
        "--project",
        "integration",
        "--passWithNoTests",
        ...args,
      ],
      env,
    ),
  ];
  const results = await Promise.all(runs.map((r) => r.done));
  if (!interrupted) {
    const quiet = run(
      "quiet files, alone",
      process.execPath,
      [...vitest, "--project", "quiet", "--passWithNoTests", ...args],
      env,
    );
    results.push(await quiet.done);
  }
  const total = Math.round((Date.now() - started) / 1000);
  const summary = results.map((r) => `${r.label}: ${r.code === 0 ? "passed" : "FAILED"} in ${r.seconds} s`);
  console.log(`\nnpm test: ${summary.join("; ")}; ${total} s in all`);
  if (results.every((r) => r.noFiles)) {
    // Each run passes with no files (one filter matches one project at most); none at all is an error.
    console.error(`run-tests: no test file matches ${args.join(" ")}`);
    process.exitCode = 1;
  } else {
    process.exitCode = results.some((r) => r.code !== 0) ? 1 : 0;
  }
}
