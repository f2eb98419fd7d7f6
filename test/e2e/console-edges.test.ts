/**
 * The web console off the happy path (a helper's operator walkthrough; each case failed on the
 * code before): a mistyped `max` re-drove the default 1,000; filters typed but not applied were
 * ignored by a re-drive; a bad dead-letter filter on one group broke every group page until a
 * reload; one failed refresh (a proxy's 502 page) stopped the overview for good with a JSON parse
 * error; a wrong token was asked for again with no word of why; an unknown route (#/nosuch) stayed
 * on "Loading…" or the previous page; a failed group or message page was never tried again.
 */
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { type BrowserContext, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AdminServer } from "../../src/admin/index.js";
import { ensurePartitions } from "../../src/store/db.js";
import { insertPublishBatch } from "../../src/store/messages.js";
import { bind } from "../support/bindings.js";
import { createTestDatabase, type TestDatabase } from "../support/db.js";
import { deadLetterDue } from "../support/dead-letters.js";
import { startTestAdminServer } from "../support/metrics-source.js";
import { publishRecord } from "../support/records.js";

const TOKEN = "console-edges-token";
const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
];
const POLL = { timeout: 15_000 };

describe("e2e: console edges", () => {
  let db: TestDatabase;
  let open: AdminServer;
  let guarded: AdminServer;
  let context: BrowserContext;
  let page: Page;
  let userDataDir: string;
  let base: string;
  let guardedBase: string;

  beforeAll(async () => {
    db = await createTestDatabase();
    const now = new Date();
    await ensurePartitions(db.pool, now);
    for (const [groupId, types] of [
      ["ga", ["pay", "pay", "refund", "evil\u202Efdp.exe"]],
      ["gb", ["pay", "pay", "pay"]],
    ] as const) {
      await bind(db.pool, { groupId, topic: "orders", messageType: "*", bindType: 2 });
      const records = types.map((messageType) =>
        publishRecord(now, [groupId], { topic: "orders", messageType, deliverLimit: 1 }),
      );
      await insertPublishBatch(db.pool, records, { now, nodeId: "t", leaseUntil: now, firstTxCheckAt: now });
      await deadLetterDue(db.pool, groupId, { now, reason: "nope" });
    }
    const common = { sampleIntervalMs: 0, deadLetterIntervalMs: 0 };
    open = await startTestAdminServer(db.pool, common);
    guarded = await startTestAdminServer(db.pool, { ...common, token: TOKEN });
    base = `http://127.0.0.1:${open.address.port}`;
    guardedBase = `http://127.0.0.1:${guarded.address.port}`;
    userDataDir = await mkdtemp(path.join(tmpdir(), "kiteq-console-edges-"));
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: "/usr/bin/chromium",
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: 30_000,
    });
    // The page's timers run on Playwright's clock: time flows as usual, and a test that waits for
    // the 5 s refresh moves the clock on instead of sleeping (this file took 47 s, 33 s of it
    // waiting for refreshes).
    await context.clock.install();
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(15_000);
    page.on("dialog", (d) => void d.accept());
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    if (userDataDir !== undefined) await rm(userDataDir, { recursive: true, force: true });
    await open?.close();
    await guarded?.close();
    await db?.drop();
  }, 60_000);

  const result = () => page.locator('[data-testid="redrive-result"]').textContent();
  /** Fires the page's next refresh (every 5 s) now. */
  const refresh = () => page.clock.fastForward(5_000);

  it("a max that is not a number is refused, not replaced by the default 1,000", {
    timeout: 60_000,
  }, async () => {
    const posted: string[] = [];
    const onRequest = (r: { method(): string; postData(): string | null }) => {
      if (r.method() === "POST") posted.push(r.postData() ?? "");
    };
    page.on("request", onRequest);
    await page.goto(`${base}/#/groups/ga`);
    await page.waitForSelector('[data-testid="dead-letter"]');
    await page.fill('#redrive-form input[name="max"]', "abc");
    await page.click('[data-testid="redrive-dry"]');
    await expect.poll(result, POLL).toMatch(/max must be a whole number, not "abc"/);
    page.off("request", onRequest);
    // Before: {"dryRun":true,"max":null,...} posted, and "1000 dead letter(s) would be re-driven".
    expect(posted).toEqual([]);
  });

  it("a re-drive takes the filters as shown, applied or not", { timeout: 60_000 }, async () => {
    await page.goto(`${base}/#/groups/ga`);
    await page.waitForSelector('[data-testid="dead-letter"]');
    await page.fill('#redrive-form input[name="max"]', "1000");
    // Typed, not applied with Filter.
    await page.fill('#dl-filters input[name="messageType"]', "refund");
    await page.click('[data-testid="redrive-dry"]');
    // Before: 3 (every dead letter of the group: the filter typed was not used).
    await expect.poll(() => page.locator('[data-testid="redrive-matched"]').textContent(), POLL).toBe("1");
    expect(await page.locator('[data-testid="dead-letter"]').count()).toBe(1);
  });

  it("a bad dead-letter filter on one group does not break the pages of other groups", {
    timeout: 60_000,
  }, async () => {
    await page.goto(`${base}/#/groups/ga`);
    await page.waitForSelector('[data-testid="dead-letter"]');
    await page.fill('#dl-filters input[name="since"]', "yesterday");
    await page.click('#dl-filters button[type="submit"]');
    await expect.poll(result, POLL).toMatch(/since must be/);
    // The same group again: the page is there, with its form to correct the filter.
    await page.goto(`${base}/#/groups/gb`);
    // Before: the whole page was "since must be an ISO 8601 time ...", on every group page.
    await expect.poll(() => page.locator('[data-testid="group-id"]').textContent(), POLL).toBe("gb");
    await expect.poll(() => page.locator('[data-testid="dead-letter"]').count(), POLL).toBe(3);
    expect(await page.locator("main").textContent()).not.toMatch(/since must be/);
  });

  it("the overview refreshes again after one failed refresh, naming the HTTP status", {
    timeout: 60_000,
  }, async () => {
    await page.goto(`${base}/#/`);
    await page.waitForSelector('[data-testid="group-row"]');
    let fail = true;
    await page.route("**/api/overview", (r) =>
      fail
        ? r.fulfill({ status: 502, contentType: "text/html", body: "<html>Bad Gateway</html>" })
        : r.continue(),
    );
    try {
      await refresh();
      await expect.poll(() => page.locator('[data-testid="error"]').count(), POLL).toBe(1);
      // Before: "Unexpected token '<', "<html>Bad "... is not valid JSON", and no refresh ever again.
      expect(await page.locator('[data-testid="error"]').textContent()).toMatch(/HTTP 502/);
      fail = false;
      await refresh();
      await expect.poll(() => page.locator('[data-testid="group-row"]').count(), POLL).toBe(2);
    } finally {
      await page.unroute("**/api/overview");
    }
  });

  it("an unknown route says there is no such page, with a link to the overview", {
    timeout: 60_000,
  }, async () => {
    const notFound = () => page.locator('[data-testid="not-found"]').count();
    // Reached by navigation from the overview. Before: the overview stayed, status "updated …".
    await page.goto(`${base}/#/`);
    await page.waitForSelector('[data-testid="group-row"]');
    await page.evaluate('location.hash = "#/nosuch"');
    await expect.poll(notFound, POLL).toBe(1);
    expect(await page.locator('[data-testid="group-row"]').count()).toBe(0);
    expect(await page.locator("main").textContent()).toContain("#/nosuch");
    expect(await page.locator("#status").textContent()).not.toMatch(/updated/);
    await page.click('[data-testid="to-overview"]');
    await expect.poll(() => page.locator('[data-testid="group-row"]').count(), POLL).toBe(2);
    // Opened directly. Before: "Loading…" for ever.
    for (const hash of ["#/groups/", "#/groups/%", "#/messages/a/b"]) {
      await page.goto(`${base}/${hash}`);
      await page.reload();
      await expect.poll(notFound, POLL).toBe(1);
      expect(await page.locator("main").textContent()).not.toMatch(/Loading/);
    }
  });

  it("a group or message page that failed to load is tried again", { timeout: 60_000 }, async () => {
    await page.goto(`${base}/#/groups/ga`);
    await page.waitForSelector('[data-testid="dead-letter"]');
    const messageId = await page.locator('[data-testid="dead-letter"] a').first().textContent();
    const status = () => page.locator("#status").textContent();
    for (const [hash, glob, shown] of [
      ["#/groups/gb", "**/api/groups/gb", '[data-testid="group-id"]'],
      [`#/messages/${messageId}`, "**/api/messages/*/explain", '[data-testid="message-id"]'],
    ] as const) {
      let fail = true;
      await page.route(glob, (r) =>
        fail
          ? r.fulfill({ status: 502, contentType: "text/html", body: "<html>Bad Gateway</html>" })
          : r.continue(),
      );
      try {
        await page.goto(`${base}/${hash}`);
        await page.reload();
        await expect.poll(() => page.locator('[data-testid="error"]').count(), POLL).toBe(1);
        expect(await status()).toMatch(/update failed .*; trying again/);
        fail = false;
        await refresh();
        // Before: the error stayed until a reload (the status said "trying again" all the same).
        await expect.poll(() => page.locator(shown).count(), POLL).toBe(1);
        // Polled: a group page is shown before its dead letters are loaded and the status set.
        await expect.poll(status, POLL).toMatch(/^updated /);
      } finally {
        await page.unroute(glob);
      }
    }
  });

  it("a text selection in the overview survives its refresh", { timeout: 60_000 }, async () => {
    await page.goto(`${base}/#/`);
    await page.waitForSelector('[data-testid="group-row"]');
    await page.evaluate(`(() => {
      const range = document.createRange();
      range.selectNodeContents(document.querySelector('[data-testid="group-row"] a'));
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
    })()`);
    const selection = () => page.evaluate<string>("window.getSelection().toString()");
    const selected = await selection();
    expect(selected.length).toBeGreaterThan(0);
    // Two refreshes (every 5 s). Before: the page was replaced and the selection was empty.
    for (let i = 0; i < 2; i++) {
      await page.evaluate('document.getElementById("status").textContent = ""');
      await refresh();
      await expect.poll(() => page.locator("#status").textContent(), POLL).toMatch(/refresh paused/);
      expect(await selection()).toBe(selected);
    }
    await page.evaluate("window.getSelection().removeAllRanges()");
  });

  it("a bidirectional control in a name is shown, not obeyed", { timeout: 60_000 }, async () => {
    await page.goto(`${base}/#/groups/ga`);
    await page.reload();
    await expect.poll(() => page.locator('[data-testid="dead-letter"]').count(), POLL).toBe(4);
    const text = await page.locator("#dl-list").textContent();
    // Before: the raw U+202E, which reverses the rest of the cell ("evil" + "exe.pdf" shown).
    expect(text).toContain("evil[U+202E]fdp.exe");
    expect(text).not.toContain("\u202E");
  });

  it("a wrong token is said to be refused; closing the dialog says what is missing", {
    timeout: 60_000,
  }, async () => {
    await page.goto(`${guardedBase}/`);
    await page.locator("#token-input").fill("not-the-token-at-all");
    await page.locator("#token-form button").click();
    // Before: the same dialog again, nothing saying the token was refused.
    await expect.poll(() => page.locator("#token-refused").isVisible(), POLL).toBe(true);
    await page.keyboard.press("Escape");
    // Before: "Loading…" for ever, and nothing to open the dialog again.
    await expect.poll(() => page.locator("main").textContent(), POLL).toMatch(/needs its token/);
    await page.click("#token-again");
    await page.locator("#token-input").fill(TOKEN);
    await page.locator("#token-form button").click();
    await expect.poll(() => page.locator('[data-testid="group-row"]').count(), POLL).toBe(2);
  });
  it("the overview lists the 100 groups most behind, filters them by name as typed, and keeps the filter across refreshes", {
    timeout: 90_000,
  }, async () => {
    // Before: every group in one table (321 groups made a page of 13,000 px) and no filter.
    for (let i = 0; i < 150; i++) {
      await bind(db.pool, {
        groupId: `bulk-${String(i).padStart(3, "0")}`,
        topic: "bulk",
        messageType: "m",
        bindType: 0,
      });
    }
    await page.goto(`${base}/`);
    const count = () => page.locator('[data-testid="groups-count"]').textContent();
    await expect.poll(count, POLL).toMatch(/^152 groups; the 100 most behind shown/);
    expect(await page.locator('[data-testid="group-row"]').count()).toBe(100);
    await page.locator("#group-filter").click();
    await page.keyboard.type("BULK-01");
    await expect.poll(count, POLL).toBe("10 of 152 groups match");
    expect(await page.locator('[data-testid="group-row"]').count()).toBe(10);
    // A refresh (every 5 s) rebuilds the page: the filter, its focus and its caret stay.
    const status = await page.locator("#status").textContent();
    await refresh();
    await expect.poll(() => page.locator("#status").textContent(), POLL).not.toBe(status);
    await page.keyboard.type("7");
    await expect.poll(count, POLL).toBe("1 of 152 groups match");
    expect(await page.locator('[data-testid="group-row"]').getAttribute("data-group")).toBe("bulk-017");
    expect(await page.locator("#group-filter").inputValue()).toBe("BULK-017");
  });
});
