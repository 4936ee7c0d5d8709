/// <reference lib="dom" />
// The web view's only script (bundled to dist/web/assets/app.js; the CSP allows no other). Pages work
// without it; it adds live updates: one EventSource on /events, and when an event concerns what this
// page shows (any configuration on the fleet page, its own on the others), the page's <main> is fetched
// again with ?fragment=1 and swapped in. The fragment is HTML the server escaped; nothing else is ever
// parsed as markup, and nothing is evaluated.

interface RegistryEvent {
  readonly Event?: string
  readonly Name?: string
}

const main = document.getElementById("live")
const indicator = document.getElementById("live-state")

/** Whether an event line changes what this page shows. */
const concerns = (ev: RegistryEvent, config: string): boolean =>
  ev.Event !== undefined && ev.Event !== "ping" && (config === "" || ev.Name === config)

const fragmentUrl = (): string => {
  const u = new URL(window.location.href)
  u.searchParams.set("fragment", "1")
  u.searchParams.delete("done") // the notice of a button already shown stays out of live updates
  u.hash = ""
  return u.toString()
}

let inFlight = false
let again = false

/** Fetches the fragment; events arriving meanwhile make one more fetch after it, never a pile of them. */
const refresh = async (target: HTMLElement): Promise<void> => {
  if (inFlight) {
    again = true
    return
  }
  inFlight = true
  try {
    do {
      again = false
      const res = await fetch(fragmentUrl(), { credentials: "same-origin", headers: { accept: "text/html" } })
      if (!res.ok) break
      const text = await res.text()
      target.innerHTML = text
      target.dispatchEvent(new CustomEvent("live-update"))
    } while (again)
  } finally {
    inFlight = false
  }
}

if (main !== null && typeof EventSource !== "undefined") {
  const config = main.dataset["config"] ?? ""
  const source = new EventSource("/events")
  const onEvent = (m: MessageEvent<string>) => {
    let ev: RegistryEvent
    try {
      ev = JSON.parse(m.data) as RegistryEvent
    } catch {
      return
    }
    if (concerns(ev, config)) void refresh(main)
  }
  source.addEventListener("message", onEvent)
  for (const name of ["state", "deleted", "served", "host"]) source.addEventListener(name, onEvent as EventListener)
  source.addEventListener("open", () => {
    if (indicator !== null) indicator.hidden = false
  })
  source.addEventListener("error", () => {
    if (indicator !== null) indicator.hidden = true
  })
}
