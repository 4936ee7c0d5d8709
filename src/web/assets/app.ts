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

/** Whether an event line changes what this page shows ("reconnected": the server lost the registry for a while, anything may have changed). */
const concerns = (ev: RegistryEvent, config: string): boolean =>
  ev.Event === "reconnected" || ev.Event === "resync" || (ev.Event !== undefined && ev.Event !== "ping" && (config === "" || ev.Name === config))

/** The page's own path with the query it was asked with (none when it is a POST's answer, e.g. a refused rollback). */
const fragmentUrl = (page: string): string => {
  const u = new URL(window.location.href)
  if (u.pathname !== page) {
    u.pathname = page
    u.search = ""
  }
  u.searchParams.set("fragment", "1")
  u.searchParams.delete("done") // the notice of a button already shown stays out of live updates
  u.hash = ""
  return u.toString()
}

let inFlight = false
let again = false

/** Fetches the fragment; events arriving meanwhile make one more fetch after it, never a pile of them. */
const refresh = async (target: HTMLElement, page: string): Promise<void> => {
  if (inFlight) {
    again = true
    return
  }
  inFlight = true
  try {
    do {
      again = false
      const res = await fetch(fragmentUrl(page), { credentials: "same-origin", headers: { accept: "text/html" } })
      if (!res.ok) break
      const text = await res.text()
      // The notice of what the operator just did (or why it was refused) stays until they navigate.
      const notice = target.querySelector(":scope > .notice")
      target.innerHTML = text
      if (notice !== null && target.querySelector(":scope > .notice") === null) target.prepend(notice)
      target.dispatchEvent(new CustomEvent("live-update"))
    } while (again)
  } finally {
    inFlight = false
  }
}

if (main !== null && typeof EventSource !== "undefined") {
  const config = main.dataset["config"] ?? ""
  const page = main.dataset["path"] ?? window.location.pathname
  const source = new EventSource("/events")
  const onEvent = (m: MessageEvent<string>) => {
    let ev: RegistryEvent
    try {
      ev = JSON.parse(m.data) as RegistryEvent
    } catch {
      return
    }
    if (concerns(ev, config)) void refresh(main, page)
  }
  source.addEventListener("message", onEvent)
  for (const name of ["state", "deleted", "served", "host"]) source.addEventListener(name, onEvent as EventListener)
  // An event between this page's rendering and the stream's opening (or while it reconnects) is lost:
  // read the page again once the stream is open, so nothing that happened meanwhile is missed.
  source.addEventListener("open", () => {
    if (indicator !== null) indicator.hidden = false
    void refresh(main, page)
  })
  source.addEventListener("error", () => {
    if (indicator !== null) indicator.hidden = true
  })
}
