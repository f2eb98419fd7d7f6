/**
 * kiteq-pg as a compare system: a broker child process on its own database, producers and one
 * consumer over TCP through the client SDK, full history written.
 */
import path from "node:path";
import type { KiteqConnection } from "../../client/connection.js";
import { type BrokerChild, startBrokerChild } from "../broker-child.js";
import type { BenchEnv } from "../environment.js";
import { benchConsumer, bindBenchGroup, closeAll, connectMany, publishBench } from "../kiteq-load.js";
import type { SeenCallback, SystemOptions, SystemUnderTest } from "./system.js";

const TOPIC = "bench-compare";
const GROUP = "bench-compare-consumer";

/** kiteq-pg (see module comment). */
export class KiteqSystem implements SystemUnderTest {
  readonly name = "kiteq-pg";
  readonly database = "bench_kiteq_pg";
  readonly rssOf = "broker child process";
  readonly settings: Record<string, string | number | boolean>;
  private broker: BrokerChild | undefined;
  private producers: KiteqConnection[] = [];
  private consumer: KiteqConnection | undefined;

  constructor(
    private readonly env: BenchEnv,
    private readonly o: SystemOptions,
  ) {
    this.settings = {
      transport: "KiteQ protocol over TCP (client SDK)",
      producerConnections: o.producerConnections,
      consumerConnections: 1,
      binding: "persistent, direct, watermark 6000 (the maximum)",
      brokerFlags:
        "--recieve-permits-per-second 0 (otherwise defaults: publish batches of up to 1000, no batch window)",
      history: "full (received, delivered, acked rows)",
    };
  }

  async setup(): Promise<void> {
    const { url, pool } = await this.env.kiteqDatabase(this.database);
    await bindBenchGroup(pool, GROUP, TOPIC);
    this.broker = await startBrokerChild({ dbUrl: url, dataDir: path.join(this.env.dir, "broker-compare") });
    this.producers = await connectMany(this.broker.port, this.o.producerConnections);
  }

  enqueue(seq: number, sentAt: number): Promise<void> {
    return publishBench(this.producers[seq % this.producers.length]!, TOPIC, this.o.bodySize, sentAt, seq);
  }

  async startConsumer(onSeen: SeenCallback): Promise<void> {
    this.consumer = await benchConsumer(this.broker!.port, GROUP, onSeen);
  }

  rssPid(): number {
    return this.broker!.pid;
  }

  async teardown(): Promise<void> {
    closeAll(this.producers);
    this.producers = [];
    this.consumer?.close();
    await this.broker?.stop();
  }
}
