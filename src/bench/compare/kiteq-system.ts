/**
 * kiteq-pg as a compare system: a broker child process on its own database, producers in the bench
 * process sharing SDK connections (by default one, as every sender of an application shares its
 * KiteQ client's connection to a broker), and one SDK consumer in a child process
 * (consumer-child.ts); full history written. Two rows: the broker's defaults (KiteQ's
 * 6,000/s watermark cap per group) and uncapped (--max-watermark 0, binding watermark 1,000,000).
 */
import path from "node:path";
import { KITEQ_MAX_WATERMARK } from "../../binding/binding.js";
import type { KiteqConnection } from "../../client/connection.js";
import { type BrokerChild, startBrokerChild } from "../broker-child.js";
import type { BenchEnv } from "../environment.js";
import { bindBenchGroup, closeAll, connectMany, publishBench } from "../kiteq-load.js";
import { fmt } from "../output.js";
import { ConsumerProcess } from "./consumer-process.js";
import type { MeasuredProcess, SeenCallback, SystemOptions, SystemUnderTest } from "./system.js";
import { installedPackage } from "./versions.js";

const TOPIC = "bench-compare";
const GROUP = "bench-compare-consumer";

/** One kiteq-pg configuration (a table row). */
export interface KiteqVariant {
  name: string;
  /** Extra `serve` flags (the bench always gives --recieve-permits-per-second 0: broker-child.ts). */
  brokerArgs: string[];
  /** Watermark of the bench binding (msg/s per group per node, also the pushes in flight). */
  watermark: number;
  /** What the broker caps, for the caps line. */
  capNote: string;
}

/** kiteq-pg with the broker's defaults: KiteQ's watermark cap of 6,000/s per group. */
export const KITEQ_DEFAULTS: KiteqVariant = {
  name: "kiteq-pg",
  brokerArgs: [],
  watermark: KITEQ_MAX_WATERMARK,
  capNote: `watermark ${fmt(KITEQ_MAX_WATERMARK)}/s per group (KiteQ default cap)`,
};

/** kiteq-pg with the watermark cap removed and a binding that does not throttle. */
export const KITEQ_UNCAPPED: KiteqVariant = {
  name: "kiteq-pg-uncapped",
  brokerArgs: ["--max-watermark", "0"],
  watermark: 1_000_000,
  capNote: "no watermark cap (--max-watermark 0, binding watermark 1,000,000)",
};

/** kiteq-pg (see module comment). */
export class KiteqSystem implements SystemUnderTest {
  readonly name: string;
  readonly version: string;
  readonly caps: string;
  readonly retention = "full history kept (messages + received/delivered/acked events)";
  readonly fillMethod = "no batch publish on the wire: pipelined single publishes";
  readonly rssOf = "broker + consumer processes";
  readonly database: string;
  readonly settings: Record<string, string | number | boolean>;
  private broker: BrokerChild | undefined;
  private producers: KiteqConnection[] = [];
  /** Connections the producers share (never more than there are producers). */
  private readonly connections: number;
  private consumer: ConsumerProcess | undefined;

  constructor(
    private readonly env: BenchEnv,
    private readonly o: SystemOptions,
    private readonly variant: KiteqVariant,
  ) {
    this.name = variant.name;
    this.version = `kiteq-pg ${installedPackage("").version} (this tree)`;
    this.caps = `${variant.capNote}; receive permits off`;
    this.database = `bench_${variant.name.replaceAll("-", "_")}`;
    this.connections = Math.min(o.kiteqConnections, o.producers);
    this.settings = {
      transport: "KiteQ protocol over TCP (client SDK)",
      producerConnections: this.connections,
      consumer: "1 SDK connection in a child process, acks at once",
      binding: `persistent, direct, watermark ${variant.watermark}`,
      brokerFlags: ["--recieve-permits-per-second 0", ...variant.brokerArgs].join(" "),
      history: "full (received, delivered, acked rows)",
    };
  }

  async setup(): Promise<void> {
    const { url, pool } = await this.env.kiteqDatabase(this.database);
    await bindBenchGroup(pool, GROUP, TOPIC, this.variant.watermark);
    this.broker = await startBrokerChild({
      dbUrl: url,
      dataDir: path.join(this.env.dir, `broker-${this.variant.name}`),
      extraArgs: this.variant.brokerArgs,
    });
    this.producers = await connectMany(this.broker.port, this.connections);
    this.consumer = await ConsumerProcess.spawn({ system: "kiteq-pg", port: this.broker.port, group: GROUP });
  }

  enqueue(producer: number, seq: number, sentAt: number): Promise<void> {
    const conn = this.producers[producer % this.producers.length]!;
    return publishBench(conn, TOPIC, this.o.bodySize, sentAt, seq);
  }

  startConsumer(onSeen: SeenCallback): Promise<void> {
    return this.consumer!.work(onSeen);
  }

  async pauseConsumer(): Promise<void> {
    await this.consumer?.pause();
  }

  async stopConsumer(): Promise<void> {
    await this.consumer?.stop();
  }

  measuredProcesses(): MeasuredProcess[] {
    const out: MeasuredProcess[] = [];
    if (this.broker) out.push({ role: "broker", pid: this.broker.pid });
    if (this.consumer) out.push({ role: "consumer", pid: this.consumer.pid });
    return out;
  }

  async teardown(): Promise<void> {
    closeAll(this.producers);
    this.producers = [];
    await this.consumer?.stop().catch(() => this.consumer?.kill());
    this.consumer = undefined;
    await this.broker?.stop();
    this.broker = undefined;
  }
}
