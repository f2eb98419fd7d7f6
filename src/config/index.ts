/** The broker's configuration: types, loading, and what its schedule settings mean. */
export { configEnvNames } from "./env.js";
export { configFlagNames, type ParsedFlags, parseFlags } from "./flags.js";
export {
  CONFIG_ERROR_EXIT_CODE,
  formatAddress,
  formatConfigError,
  isLoopbackHost,
  loadConfig,
} from "./load.js";
export { txCheckDelaySeconds } from "./schedule.js";
export { DEFAULT_CONNECTION_LIMITS, DEFAULT_REDELIVERY } from "./settings.js";
export type {
  BatchConfig,
  BindAddress,
  BrokerConfig,
  ConnectionLimits,
  LoadedConfig,
  LogLevel,
  PublishLimits,
  RedeliveryStep,
  RegistryConfig,
  TxCheckConfig,
} from "./types.js";
export { LOG_LEVELS } from "./types.js";
export { parseBind, redactUrl } from "./values.js";
