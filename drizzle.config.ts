import { defineConfig } from "drizzle-kit";

// Only the non-partitioned working tables are generated from the schema; the partitioned
// history tables live in custom migrations (drizzle-kit cannot express PARTITION BY).
export default defineConfig({
  dialect: "postgresql",
  schema: "./src/store/schema.ts",
  out: "./migrations",
  dbCredentials: { url: process.env.KITEQ_DB_URL ?? "postgres://postgres:postgres@127.0.0.1:5432/kiteq" },
});
