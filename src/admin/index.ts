/** The admin HTTP server (/healthz, /metrics, /messages/:id) and what it reads from a node. */
export {
  type BatchStats,
  createMetrics,
  type MetricsOptions,
  type MetricsSource,
  OWED_CACHE_MS,
} from "./metrics.js";
export {
  ADMIN_REQUEST_DEADLINE_MS,
  type AdminServer,
  type AdminServerOptions,
  bearerCheck,
  startAdminServer,
} from "./server.js";
