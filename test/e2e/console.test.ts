/**
 * The web console in a real browser (playwright-core driving Debian's chromium, installed by the
 * test setup): a broker with a token, a group owed messages with no consumer, a group whose
 * messages were dead-lettered; in the console: the owed count and age, a message's explain page,
 * a dry-run re-drive then a real one, and the re-driven messages delivered to a consumer.
 * KITEQ_UPDATE_SCREENSHOTS=1 writes the README's screenshots into docs/.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BindType, createBinding } from "../../src/binding/binding.js";
import { buildHeader, KiteqConnection } from "../../src/client/connection.js";
import { upsertBinding } from "../../src/store/bindings.js";
import { type BrokerProcess, startBrokerProcess } from "../support/broker-process.js";
import { recordingConsumer, waitFor } from "../support/consumers.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";

const TOKEN = "console-test-token";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const ROOT = path.resolve(import.meta.dirname, "../..");
/** expect.poll waits 1 s by default: a broker short of CPU (CI) may answer the page later. */
const POLL = { timeout: 15_000 };

describe("e2e: the web console in a browser", () => {
  let db: TestDatabase;
  let broker: BrokerProcess;
  let producer: KiteqConnection;
  let context: BrowserContext;
  let page: Page;
  let userDataDir: string;
  let shotsDir: string;
  let adminBase: string;
  const open: KiteqConnection[] = [];
  const dead: string[] = [];

  beforeAll(async () => {
    db = await createTestDatabase();
    for (const [groupId, topic] of [
      ["g-owed", "orders"],
      ["g-dead", "orders"],
    ]) {
      await upsertBinding(
        db.pool,
        createBinding({
          groupId: groupId!,
          topic: topic!,
          messageType: "created",
          bindType: BindType.Direct,
          watermark: 1000,
          persistent: true,
        }),
        "cli",
        new Date(),
      );
    }
    broker = await startBrokerProcess([
      "--db",
      db.url,
      "--delivery-seconds",
      "1",
      "--admin",
      "127.0.0.1:0",
      "--admin-token",
      TOKEN,
    ]);
    const listening = broker.logs.find((l) => l.msg === "admin server listening");
    expect(listening, "the broker logs its admin address").toBeDefined();
    adminBase = `http://${String(listening!.address)}`;
    producer = await KiteqConnection.connect({
      host: broker.host,
      port: broker.port,
      groupId: "shop",
      heartbeatMs: 0,
    });
    open.push(producer);
    for (let i = 0; i < 3; i++) {
      const ack = await producer.publish(
        buildHeader({ topic: "orders", messageType: "created", groupId: "shop", deliverLimit: 1 }),
        `order ${i}`,
      );
      expect(ack.status).toBe(true);
      dead.push(ack.messageId);
    }
    // g-dead's consumer says false: deliver limit 1, so each message is dead-lettered at once.
    const refuser = await recordingConsumer(broker.port, "g-dead", () => false);
    await waitFor(
      async () =>
        (
          await db.pool.query(
            "SELECT count(*)::int AS n FROM message_events WHERE group_id = 'g-dead' AND kind = 'dead_lettered'",
          )
        ).rows[0].n === 3,
      15_000,
      "three dead letters",
    );
    refuser.conn.close();
    userDataDir = await mkdtemp(path.join(tmpdir(), "kiteq-console-chromium-"));
    shotsDir = process.env.KITEQ_UPDATE_SCREENSHOTS === "1" ? path.join(ROOT, "docs") : userDataDir;
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1366, height: 820 },
      timeout: 30_000,
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(15_000);
    page.on("dialog", (d) => void d.accept());
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
    for (const c of open) c.close();
    await broker?.stop();
    await db?.drop();
  }, 60_000);

  it("owed count and age, explain, dry-run then real re-drive, delivery to a consumer", {
    timeout: 120_000,
  }, async () => {
    await page.goto(`${adminBase}/`);
    // The page holds no data without the token: it asks for it.
    await page.locator("#token-input").fill(TOKEN);
    await page.locator("#token-form button").click();
    const owedRow = page.locator('[data-testid="group-row"][data-group="g-owed"]');
    await expect.poll(() => owedRow.locator('[data-testid="owed"]').textContent(), POLL).toBe("3");
    expect(await owedRow.locator('[data-testid="age"]').textContent()).toMatch(/^\d+ s$/);
    expect(await page.locator('[data-testid="total-owed"]').textContent()).toBe("3");
    await page.screenshot({ path: path.join(shotsDir, "console-overview.png"), fullPage: true });

    // The dead group's page: its three dead letters, each linked to its explain page.
    await page.locator('[data-testid="group-row"][data-group="g-dead"] a').click();
    await expect.poll(() => page.locator('[data-testid="dead-letter"]').count(), POLL).toBe(3);
    await page.locator(`a[href="#/messages/${dead[0]}"]`).first().click();
    const block = page.locator('[data-testid="explain-group"][data-group="g-dead"]');
    await expect
      .poll(() => block.locator('[data-testid="explain-state"]').textContent(), POLL)
      .toBe("dead lettered");
    expect(await block.locator('[data-testid="explain-description"]').textContent()).toMatch(
      /dead-lettered at .* after 1 attempt; last nack/,
    );
    const owedBlock = page.locator('[data-testid="explain-group"][data-group="g-owed"]');
    expect(await owedBlock.locator('[data-testid="explain-state"]').textContent()).toBe("owed");
    await page.screenshot({ path: path.join(shotsDir, "console-explain.png"), fullPage: true });

    // Search by messageId lands on the same page.
    await page.goto(`${adminBase}/`);
    await page.locator("#search-id").fill(dead[1]!);
    await page.locator("#search button").click();
    await expect.poll(() => page.locator('[data-testid="message-id"]').textContent(), POLL).toBe(dead[1]);

    // Re-drive: a dry run first (nothing changes), then for real.
    await page.goto(`${adminBase}/#/groups/g-dead`);
    await expect.poll(() => page.locator('[data-testid="dead-letter"]').count(), POLL).toBe(3);
    await page.locator('input[name="by"]').fill("on-call");
    await page.locator('input[name="reason"]').fill("consumer fixed");
    await page.locator('[data-testid="redrive-dry"]').click();
    await expect.poll(() => page.locator('[data-testid="redrive-matched"]').textContent(), POLL).toBe("3");
    const owedBefore = await db.pool.query(
      "SELECT count(*)::int AS n FROM deliveries WHERE group_id = 'g-dead'",
    );
    expect(owedBefore.rows[0].n).toBe(0);
    await page.locator('[data-testid="redrive-run"]').click();
    await expect.poll(() => page.locator('[data-testid="redrive-count"]').textContent(), POLL).toBe("3");
    await expect.poll(() => page.locator('[data-testid="dead-letter"]').count(), POLL).toBe(0);
    const redriven = await db.pool.query(
      "SELECT detail FROM message_events WHERE group_id = 'g-dead' AND kind = 'redriven'",
    );
    expect(redriven.rows.map((r) => r.detail)).toEqual(
      Array(3).fill(expect.stringMatching(/^redriven by on-call from \S+: consumer fixed$/)),
    );

    // A consumer that connects now receives them.
    const consumer = await recordingConsumer(broker.port, "g-dead");
    open.push(consumer.conn);
    await waitFor(() => consumer.received.length >= 3, 15_000, "the re-driven messages delivered");
    expect(consumer.ids().sort()).toEqual([...dead].sort());
  });
});
