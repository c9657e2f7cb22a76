/** The console: a hash router over the pages, with the settings, react-query and wagmi around them. */
import { StrictMode, useEffect, useState } from "react";
import { createRoot } from "react-dom/client";
import { QueryClient, QueryClientProvider } from "@tanstack/react-query";
import { WagmiProvider } from "wagmi";
import { SettingsContext } from "./context.js";
import { loadSettings, type Settings } from "./settings.js";
import { walletConfig } from "./wallet.js";
import { FleetPage } from "./pages/Fleet.js";
import { DevicePage } from "./pages/Device.js";
import { ShipmentPage } from "./pages/Shipment.js";
import { LockPage } from "./pages/Lock.js";
import { ChannelPage } from "./pages/Channel.js";
import { SettingsPage } from "./pages/SettingsPage.js";
import "./style.css";

const queries = new QueryClient({
  defaultOptions: { queries: { retry: 1, refetchInterval: 4_000, staleTime: 2_000 } },
});

function useRoute() {
  const [hash, setHash] = useState(location.hash.slice(1) || "/");
  useEffect(() => {
    const on = () => setHash(location.hash.slice(1) || "/");
    addEventListener("hashchange", on);
    return () => removeEventListener("hashchange", on);
  }, []);
  return hash;
}

function Page({
  route,
  settings,
  onSettings,
}: {
  route: string;
  settings: Settings;
  onSettings: (s: Settings) => void;
}) {
  const [path] = route.split("?");
  const [, page, id] = path.split("/");
  switch (page) {
    case "device":
      return <DevicePage id={id} />;
    case "shipment":
      return <ShipmentPage id={id} />;
    case "lock":
      return <LockPage id={id} />;
    case "channel":
      return <ChannelPage id={id} />;
    case "settings":
      return <SettingsPage settings={settings} onSave={onSettings} />;
    default:
      return <FleetPage />;
  }
}

function App() {
  const [settings, setSettings] = useState(loadSettings);
  const route = useRoute();
  const [wagmi] = useState(() => walletConfig(settings.rpc));
  useEffect(() => {
    // Focus the page's heading on navigation, so keyboard and screen-reader users land on it.
    document.querySelector<HTMLElement>("main h1")?.focus();
  }, [route]);
  return (
    <SettingsContext.Provider value={settings}>
      <WagmiProvider config={wagmi}>
        <QueryClientProvider client={queries}>
          <a
            className="skip"
            href="#main"
            onClick={(e) => (e.preventDefault(), document.getElementById("main")?.focus())}
          >
            Skip to content
          </a>
          <header>
            <nav aria-label="Console">
              <strong>Custos Console</strong> <a href="#/">Fleet</a> <a href="#/settings">Settings</a>
            </nav>
          </header>
          <main id="main" tabIndex={-1}>
            <Page route={route} settings={settings} onSettings={setSettings} />
          </main>
        </QueryClientProvider>
      </WagmiProvider>
    </SettingsContext.Provider>
  );
}

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    <App />
  </StrictMode>,
);
