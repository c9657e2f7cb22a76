/**
 * The console's Vite build: the app in `console/`, built into `console/dist` (served by the watch at
 * `/`). `npm run console` runs the dev server with the watch's API proxied from CUSTOS_WATCH_URL, so
 * the app calls its API on its own origin as it does when the watch serves it.
 */
import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

const root = fileURLToPath(new URL(".", import.meta.url));
const watch = process.env.CUSTOS_WATCH_URL ?? "http://127.0.0.1:42069";
const api = { target: watch, changeOrigin: true };

export default defineConfig({
  root,
  base: "./",
  plugins: [react()],
  // The app reads the project's catalogue, beacons and custody modules and the contracts' ABIs.
  server: {
    fs: { allow: [fileURLToPath(new URL("..", import.meta.url))] },
    proxy: { "/watch": api, "/graphql": api, "/sql": api, "/subscriptions": api },
  },
  preview: { proxy: { "/watch": api, "/graphql": api, "/sql": api, "/subscriptions": api } },
  build: { outDir: "dist", emptyOutDir: true, chunkSizeWarningLimit: 1024 },
});
