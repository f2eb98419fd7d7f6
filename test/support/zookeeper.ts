/** The throwaway ZooKeeper server of the tests (shared with the benches: src/bench/zookeeper-server.ts). */
export * from "../../src/bench/zookeeper-server.js";
