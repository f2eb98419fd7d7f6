/**
 * /metrics while a database server hangs (a shard's server stopped with SIGSTOP: connections are
 * accepted, nothing is answered). Before, a scrape waited on the owed-deliveries count and the
 * backlog sample for ever, so kiteq_shard_up, which says what is wrong, could not be scraped.
 */
import net from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createMetrics, SCRAPE_WAIT_MS } from "../../src/admin/metrics.js";
import type { Sampler } from "../../src/admin/sampler.js";
import { silentLogger } from "../../src/log.js";
import { idleMetricsSource } from "../support/metrics-source.js";

describe("metrics: a database server that hangs", () => {
  let server: net.Server;
  const sockets: net.Socket[] = [];
  let pool: pg.Pool;

  beforeAll(async () => {
    // Accepts connections and never answers, as a stopped PostgreSQL's kernel does.
    server = net.createServer((s) => {
      sockets.push(s);
      s.on("error", () => undefined);
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as net.AddressInfo).port;
    pool = new pg.Pool({ connectionString: `postgres://u:p@127.0.0.1:${port}/db`, max: 2 });
    pool.on("error", () => undefined);
  });
  afterAll(async () => {
    for (const s of sockets) s.destroy();
    server.close();
    await pool.end().catch(() => undefined);
  });

  it("a scrape answers within its wait, with what the node knows itself", async () => {
    const hung = { latest: () => new Promise<never>(() => undefined) } as unknown as Sampler;
    const registry = createMetrics({
      source: idleMetricsSource({ shardsUp: () => [true, false] }),
      pool,
      pools: [pool],
      log: silentLogger,
      processMetrics: false,
      sampler: hung,
    });
    const started = Date.now();
    const text = await registry.metrics();
    expect(Date.now() - started).toBeLessThan(SCRAPE_WAIT_MS + 2_000);
    expect(text).toContain('kiteq_shard_up{shard="1"} 0');
    expect(text).not.toMatch(/^kiteq_deliveries_owed\{/m);
  }, 20_000);
});
