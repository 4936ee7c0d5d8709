// The page shell: one stylesheet and one script, both from /assets (the CSP allows nothing else), the
// navigation, an optional notice, and `<main id="live">`, the part app.js fetches again (`?fragment=1`)
// and swaps in when an event concerns this page. `data-config` names the configuration shown ("" on
// the fleet page: every event concerns it); `data-path` is the page's own path.
// Referrer policy same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with
// every form POST, even a same-origin one, and the server's Origin check (rightly) refuses it. With
// same-origin, nothing is sent to any other origin and our own POSTs carry our Origin.
import { type Html, html } from "../Html.js"
import type { PageContext } from "../WebModel.js"

export interface Shell {
  readonly title: string
  /** The configuration this page shows, or "" for the whole fleet. */
  readonly config: string
  /** This page's own path (`/c/NAME`): what app.js fetches again, also when the page is a POST's answer. */
  readonly path: string
  readonly body: Html
}

const notice = (ctx: PageContext) =>
  ctx.notice !== undefined && html`<p class="notice notice-${ctx.notice.kind}" role="${ctx.notice.kind === "error" ? "alert" : "status"}">${ctx.notice.text}</p>`

export const layout = (shell: Shell, ctx: PageContext): string => {
  const inner = html`${notice(ctx)}${shell.body}`
  if (ctx.fragment === true) return inner.text
  return html`<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${shell.title} · deploy-tools</title>
<link rel="stylesheet" href="/assets/app.css">
<script src="/assets/app.js" defer></script>
</head>
<body>
<header><nav><a href="/" class="brand">deploy-tools</a> <a href="/">Fleet</a>${shell.config !== "" && html` › <a href="${`/c/${encodeURIComponent(shell.config)}`}">${shell.config}</a>`}</nav><span id="live-state" class="live-state" hidden>live</span></header>
<main id="live" data-config="${shell.config}" data-path="${shell.path}">${inner}</main>
</body>
</html>
`.text
}

/** A plain page for an error the server answers (not found, registry unreachable, refused request). */
export const errorPage = (status: number, text: string, ctx: PageContext): string =>
  layout({ title: `${status}`, config: "", path: "/", body: html`<h1>${status}</h1><p class="error">${text}</p><p><a href="/">Back to the fleet</a></p>` }, ctx)
