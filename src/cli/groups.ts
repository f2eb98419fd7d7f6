/**
 * `kiteq-pg groups`: every group's backlog, dead letters, rates and consumers, most behind first,
 * as the console's overview shows them: GET /api/groups of a running broker, or the same figures
 * from the database (src/admin/group-rows.ts).
 */
import { type GroupRow, readGroupsFromStore } from "../admin/group-rows.js";
import { ErrorCode, KiteqError } from "../errors.js";
import { readThrough } from "./admin-client.js";
import type { Command } from "./command.js";
import { formatJson, formatTable, oneLine } from "./output.js";

interface GroupsAnswer {
  sampledAt: Date;
  /** Present when read from the database: how many live nodes' heartbeats gave the rates. */
  source?: string;
  liveNodes?: number;
  groups: GroupRow[];
}

/** `groups [--json]`. */
export const groupsCommand: Command = {
  name: "groups",
  summary: "every group's backlog, dead letters, rates and consumers, most behind first",
  usage: [
    "groups [--json] [--verbose]",
    "  through a running broker's admin API (--admin, --admin-token), else from the database: rates,",
    "  consumers and deliveries in flight then as the live nodes' last heartbeats (every 5 s) wrote them",
  ],
  flags: ["json"],
  async run(ctx) {
    const { args, out } = ctx;
    const answer = await readThrough<GroupsAnswer>(
      ctx,
      async (api) => {
        const body = await api.get<GroupsAnswer>("/api/groups");
        if (body === null) {
          throw new KiteqError(
            ErrorCode.StoreFailed,
            `the admin API at ${api.base} has no /api/groups (an older broker?)`,
          );
        }
        return body;
      },
      (pool, shards) => readGroupsFromStore(pool, shards, new Date()),
    );
    if (args.has("json")) {
      out.out(formatJson(answer));
      return 0;
    }
    const rate = (n: number) => (n >= 10 ? String(Math.round(n)) : n.toFixed(1));
    out.out(
      formatTable(
        [
          "GROUP",
          "OWED",
          "OLDEST OWED",
          "IN FLIGHT",
          "DEAD",
          "DELIVERED/S",
          "ACKED/S",
          "NACKED/S",
          "CONSUMERS",
          "BINDINGS",
        ],
        answer.groups.map((g) => [
          oneLine(g.groupId),
          g.owed,
          g.owed === 0 ? "-" : `${g.oldestOwedAgeSeconds} s`,
          g.inFlight,
          g.deadLettersCapped ? `${g.deadLetters}+` : g.deadLetters,
          rate(g.rates.delivered),
          rate(g.rates.acked),
          rate(g.rates.nacked),
          Object.values(g.consumers).reduce((a, b) => a + b, 0),
          g.bindings.length,
        ]),
      ),
    );
    const scope =
      answer.source !== "database"
        ? "rates and consumers summed over the live nodes"
        : answer.liveNodes === 0
          ? "read from the database with no live node: no rates, consumers or deliveries in flight to report"
          : `read from the database: rates, consumers and in flight as the last heartbeats of ${answer.liveNodes} live node(s) said`;
    out.err(`(${answer.groups.length} group(s), sampled ${answer.sampledAt.toISOString()}; ${scope})`);
    return 0;
  },
};
