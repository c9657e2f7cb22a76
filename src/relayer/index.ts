/** The relayer gateway: see server.ts for the API and submitter.ts for how batches are sent. */
export { startRelayer, type RelayerHandle, type RelayerStats } from "./server";
export { DEFAULTS, type RelayerConfig, type RelayerHooks } from "./config";
export { REFUSALS, Refusal, type RefusalBody, type RefusalCode } from "./errors";
export { checkForwardShape, forwardId, type ForwardRequestBody } from "./forward";
export type { MessageStatus } from "./store";
