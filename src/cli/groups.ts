/**
 * `kiteq-pg groups`: every group's backlog, dead letters, rates and consumers, most behind first,
 * as the console's overview shows them (GET /api/groups of a running broker).
 */
import { findAdminApi } from "./admin-client.js";
import type { Command } from "./command.js";
import { formatJson, formatTable, oneLine } from "./output.js";

/** One group of GET /api/groups (the fields printed). */
interface GroupRow {
  groupId: string;
  bindings: unknown[];
  owed: number;
  inFlight: number;
  oldestOwedAgeSeconds: number;
  deadLetters: number;
  deadLettersCapped: boolean;
  rates: { delivered: number; acked: number; nacked: number };
  consumers: Record<string, number>;
}

interface GroupsAnswer {
  sampledAt: Date;
  groups: GroupRow[];
}

/** `groups [--json]`. */
export const groupsCommand: Command = {
  name: "groups",
  summary: "every group's backlog, dead letters, rates and consumers, most behind first",
  usage: [
    "groups [--json]",
    "  read through a running broker's admin API (--admin, --admin-token): rates and consumers are the",
    "  nodes' own, which the database does not hold",
  ],
  flags: ["json"],
  async run(ctx) {
    const { args, out } = ctx;
    const found = await findAdminApi(ctx);
    if (found.api === null) {
      out.err(
        `kiteq-pg: groups reads a running broker's admin API (rates and consumers are the nodes' own): ${found.why}; start a broker, or give one's --admin host:port (and --admin-token)`,
      );
      return 1;
    }
    if (found.note !== undefined) out.err(found.note);
    const answer = await found.api.get<GroupsAnswer>("/api/groups");
    if (answer === null) {
      out.err(`kiteq-pg: the admin API at ${found.api.base} has no /api/groups (an older broker?)`);
      return 1;
    }
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
    out.err(
      `(${answer.groups.length} group(s), sampled ${answer.sampledAt.toISOString()}; rates and consumers summed over the live nodes)`,
    );
    return 0;
  },
};
