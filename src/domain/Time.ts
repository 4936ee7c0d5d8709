// Time formats of the wire contract: tables print RFC 3339 seconds, documents fractional seconds (Go's RFC3339Nano).

/** `2017-03-01T11:23:36Z` */
export const rfc3339Seconds = (d: Date): string => d.toISOString().replace(/\.\d+Z$/, "Z")

/** `2017-03-01T11:23:36.12Z`: fractional seconds with trailing zeros trimmed, as Go prints them. */
export const rfc3339Nano = (d: Date): string =>
  d.toISOString().replace(/\.(\d+)Z$/, (_m, frac: string) => {
    const t = frac.replace(/0+$/, "")
    return t.length > 0 ? `.${t}Z` : "Z"
  })
