/** The relayer gateway: see server.ts for the API and submitter.ts for how batches are sent. */
export { startRelayer, type RelayerHandle, type RelayerStats } from "./server.js";
export { DEFAULTS, type RelayerConfig, type RelayerHooks } from "./config.js";
export { REFUSALS, Refusal, type RefusalBody, type RefusalCode } from "./errors.js";
export type { RefusalItem, RefusalPage } from "./refusalFeed.js";
export { checkForwardShape, forwardId, type ForwardRequestBody } from "./forward.js";
export type { MessageStatus } from "./store.js";
