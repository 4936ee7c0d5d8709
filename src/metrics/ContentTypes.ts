// The two exposition formats' HTTP content types (MetricsServer.ts answers with one of them).
export const TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
export const OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8"
