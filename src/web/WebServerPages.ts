// The page renderers the server uses: src/web/pages' pure functions (kept apart so the server can be
// tested with others).
import { configurationPage } from "./pages/Configuration.js"
import { fleetPage } from "./pages/Fleet.js"
import { errorPage } from "./pages/Layout.js"
import { timelinePage } from "./pages/Timeline.js"
import type { Pages } from "./WebServer.js"

export const pages: Pages = { fleet: fleetPage, configuration: configurationPage, timeline: timelinePage, error: errorPage }
