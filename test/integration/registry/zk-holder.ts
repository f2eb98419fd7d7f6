/**
 * Child process for the kill -9 test: registers a broker address in ZooKeeper, prints
 * "registered" and waits to be killed. Usage: zk-holder.ts <connectString> <ip:port> <sessionMs>
 */
import { ZooKeeperRegistry } from "../../../src/registry/zookeeper.js";

const [connectString, address, sessionMs] = process.argv.slice(2);
if (connectString === undefined || address === undefined) {
  console.error("usage: zk-holder.ts <connectString> <ip:port> [sessionTimeoutMs]");
  process.exit(2);
}
const registry = new ZooKeeperRegistry({ connectString, sessionTimeoutMs: Number(sessionMs ?? 4000) });
await registry.start(address, ["trade"], {
  bindingsChanged() {},
  serverGone() {},
  serverJoined() {},
  outage() {},
});
process.stdout.write("registered\n");
setInterval(() => {}, 60_000);
