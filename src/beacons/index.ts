/**
 * Location beacons only their owner and its responders can read: key generation and encoding,
 * sealing a location to a beacon's recipient keys, opening it with one of them. Isomorphic (Web
 * Crypto): the agent uses it in Node, the console in the browser.
 */
export { BEACON_INFO, BEACON_SUITE, SEALED_BYTES } from "./suite.js";
export { BeaconError } from "./hex.js";
export { generateBeaconKey, beaconPublicKey, importBeaconKey, checkKey, type BeaconKeyPair } from "./keys.js";
export { sealLocation, openLocation, splitRecipients, type Location, type BeaconContext } from "./seal.js";
