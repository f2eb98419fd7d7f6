/**
 * `kiteq-pg db-url`: the PostgreSQL URL of this broker's database, with its password, for a
 * second node's --db or for psql. On the embedded default it names the running server's port
 * (or the --pg-port one) and the password kept in the data directory's 0600 password file.
 */
import path from "node:path";
import { embeddedDatabaseUrl } from "../store/embedded-access.js";
import type { Command } from "./command.js";

/** `db-url`: print the database URL (it holds a password: keep it out of shared logs). */
export const dbUrlCommand: Command = {
  name: "db-url",
  summary: "print the URL of the broker's database (for a second node's --db, or psql)",
  usage: [
    "db-url [--data-dir DIR] [--pg-port PORT] [--json]",
    "  the embedded PostgreSQL's URL with its password (the running broker's port, else --pg-port);",
    "  with --db, that URL as given (several shards: one line each, shard 0 first)",
  ],
  flags: ["json"],
  async run({ config, args, out }) {
    const json = args.has("json");
    if (config.databaseUrl !== null) {
      // Every shard: the first alone looked like the whole store (a second node given only it
      // refuses to start, its shard list not matching).
      const urls = config.databaseUrls;
      if (json) {
        out.out(
          JSON.stringify(
            urls.length > 1
              ? { url: urls[0], urls, embedded: false }
              : { url: config.databaseUrl, embedded: false },
          ),
        );
      } else {
        for (const url of urls) out.out(url);
      }
      return 0;
    }
    const { url, running } = await embeddedDatabaseUrl(
      path.join(config.dataDir, "pg"),
      "kiteq",
      config.pgPort,
    );
    out.out(json ? JSON.stringify({ url, embedded: true, running }) : url);
    if (!running && !json)
      out.err(
        "kiteq-pg: note: the embedded PostgreSQL is not running now; the broker listens there once started",
      );
    return 0;
  },
};
