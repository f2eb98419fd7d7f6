#!/usr/bin/env node
// Builds packages/client (the SDK as a package of its own, `kiteq-pg-client`): the SDK's modules
// compiled from src/ (tsconfig.client.json names the entry; tsc follows its imports) and the
// protobuf schema they read at run time (dist/protocol/messages.js loads ../../proto/).
import { execFileSync } from "node:child_process";
import { cpSync, rmSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "..");
const pkg = path.join(root, "packages/client");
rmSync(path.join(pkg, "dist"), { recursive: true, force: true });
rmSync(path.join(pkg, "proto"), { recursive: true, force: true });
const tsc = path.join(root, "node_modules/typescript/bin/tsc");
try {
  execFileSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.client.json")], { stdio: "inherit" });
} catch {
  console.error("build-client: the TypeScript build failed (see above); run `npm ci` in the clone first");
  process.exit(1);
}
cpSync(path.join(root, "proto"), path.join(pkg, "proto"), { recursive: true });
