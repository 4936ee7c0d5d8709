// Effect's metrics in the Prometheus text format, through the maintained libraries: @effect/opentelemetry
// turns Effect's metric registry into an OpenTelemetry MetricProducer, OpenTelemetry's PrometheusExporter
// (as a pull MetricReader, its own HTTP server off) collects it and its serializer writes the text.
// Loaded only by programs asked for metrics (LoadExposition.ts), so start-up without them does not pay.
import * as OtelMetrics from "@effect/opentelemetry/Metrics"
import * as OtelResource from "@effect/opentelemetry/Resource"
import { PrometheusExporter, PrometheusSerializer } from "@opentelemetry/exporter-prometheus"
import { Effect } from "effect"


export interface Exposition {
  /**
   * The current value of every metric (or of those whose name `only` accepts); OpenMetrics 1.0 when
   * `openMetrics`, else text format 0.0.4.
   */
  readonly render: (openMetrics: boolean, only?: (name: string) => boolean) => Promise<string>
}

/**
 * The text format as the serializer writes it, less the `# UNIT` lines (every Effect metric is unit "1",
 * which OpenMetrics would require as a name suffix) and the "no metrics" placeholder.
 */
const tidy = (text: string): string =>
  text
    .split("\n")
    .filter((l) => !l.startsWith("# UNIT ") && !l.startsWith("# no registered metrics"))
    .join("\n")

/**
 * OpenMetrics 1.0 from the text format: a counter's family name drops `_total` (its sample keeps it), and
 * the exposition ends with `# EOF`. Gauges and histograms read the same in both.
 */
export const toOpenMetrics = (text: string): string => {
  const counters = new Set<string>()
  for (const m of text.matchAll(/^# TYPE (\S+)_total counter$/gm)) counters.add(m[1]!)
  const body = text.replace(/^# (HELP|TYPE) (\S+)_total /gm, (line, kind: string, name: string) =>
    counters.has(name) ? `# ${kind} ${name} ` : line
  )
  return `${body.endsWith("\n") || body === "" ? body : body + "\n"}# EOF\n`
}

/**
 * A pull reader over Effect's global metric registry. Plain promises, no Effect crossing this module's
 * edge: the build bundles this module on its own (dist/metrics/exposition.bundle.cjs, with its own copy of
 * effect, which finds the same registry through effect's global store), so the programs' bundles do
 * not carry the OpenTelemetry libraries (LoadExposition.ts).
 */
export const createExposition = (service: { readonly name: string; readonly version: string }): Exposition & { readonly close: () => Promise<void> } => {
  const exporter = new PrometheusExporter({ preventServerStart: true, withoutScopeInfo: true, withoutTargetInfo: true })
  const producer = Effect.runSync(Effect.provide(OtelMetrics.makeProducer, OtelResource.layer({ serviceName: service.name, serviceVersion: service.version })))
  exporter.setMetricProducer(producer)
  const serializer = new PrometheusSerializer(undefined, false, undefined, true, true)
  return {
    render: async (openMetrics: boolean, only?: (name: string) => boolean) => {
      const { resourceMetrics } = await exporter.collect()
      if (only !== undefined) {
        for (const scope of resourceMetrics.scopeMetrics) scope.metrics = scope.metrics.filter((m) => only(m.descriptor.name))
      }
      const text = tidy(serializer.serialize(resourceMetrics))
      return openMetrics ? toOpenMetrics(text) : text.endsWith("\n") ? text : text + "\n"
    },
    close: () => exporter.shutdown()
  }
}
