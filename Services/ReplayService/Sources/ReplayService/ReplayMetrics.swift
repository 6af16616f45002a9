import Metrics
import Prometheus
import ReplayStorage

/// swift-metrics instruments for one replay server, reported in Prometheus text format.
///
/// Live instruments (updated by `ReplayGRPCService` on every call), per table
/// (`table="<name>"` label):
/// - `loom_replay_inserts_total`, `loom_replay_samples_total` (counters): items inserted and
///   sampled through the service;
/// - `loom_replay_insert_call_seconds`, `loom_replay_sample_call_seconds` (timers, reported
///   as histograms): wall time of each blocking table call (one Insert message's items, or
///   one sampled batch), waits for the rate limiter included.
///
/// Snapshot gauges, read from `ReplayServer.info()` by `refresh()` (the `/metrics`
/// endpoint calls it before each scrape): `loom_replay_table_size`,
/// `loom_replay_table_max_size`, `loom_replay_waiting_inserts`,
/// `loom_replay_waiting_samples`, and the rate limiter's blocked-time statistics since
/// start or the last reset: `loom_replay_insert_blocked_seconds`,
/// `loom_replay_sample_blocked_seconds`, `loom_replay_insert_blocked_calls`,
/// `loom_replay_sample_blocked_calls`, `loom_replay_insert_timeouts`,
/// `loom_replay_sample_timeouts`.
///
/// Each instance has its own `PrometheusCollectorRegistry` (no global `MetricsSystem`
/// bootstrap), so several servers can live in one process. Thread-safe: the instruments
/// are, and the table map is immutable after init.
public final class ReplayMetrics: Sendable {
    /// The registry the instruments report to; `registry.emitToString()` is the scrape body.
    public let registry: PrometheusCollectorRegistry
    private let replay: ReplayServer
    private let tables: [String: TableInstruments]

    /// Instruments for every table of `replay`, in a fresh registry.
    public init(replay: ReplayServer) {
        let registry = PrometheusCollectorRegistry()
        var factory = PrometheusMetricsFactory(registry: registry)
        let callBuckets: [Duration] = [.microseconds(50), .microseconds(200), .milliseconds(1), .milliseconds(5),
                                       .milliseconds(25), .milliseconds(100), .milliseconds(500), .seconds(2), .seconds(10)]
        factory.durationHistogramBuckets = ["loom_replay_insert_call_seconds": callBuckets,
                                            "loom_replay_sample_call_seconds": callBuckets]
        self.registry = registry
        self.replay = replay
        var tables: [String: TableInstruments] = [:]
        for info in replay.info() {
            tables[info.config.name] = TableInstruments(table: info.config.name, factory: factory)
        }
        self.tables = tables
    }

    /// Counts `items` as inserted into their tables, and the blocking call's duration.
    func recordInserts(items: ArraySlice<ReplayItem>, elapsed: Duration) {
        guard let first = items.first else { return }
        if items.allSatisfy({ $0.table == first.table }) {
            guard let t = tables[first.table] else { return }
            t.inserts.increment(by: items.count)
            t.insertCall.recordNanoseconds(Self.nanoseconds(elapsed))
        } else {
            var counts: [String: Int] = [:]
            for item in items { counts[item.table, default: 0] += 1 }
            for (name, n) in counts { tables[name]?.inserts.increment(by: n) }
            for name in counts.keys { tables[name]?.insertCall.recordNanoseconds(Self.nanoseconds(elapsed)) }
        }
    }

    /// Counts `count` samples of `table`, and the blocking call's duration.
    func recordSamples(table: String, count: Int, elapsed: Duration) {
        guard let t = tables[table] else { return }
        t.samples.increment(by: count)
        t.sampleCall.recordNanoseconds(Self.nanoseconds(elapsed))
    }

    /// Sets the snapshot gauges from the tables' current info.
    public func refresh() {
        for info in replay.info() {
            guard let t = tables[info.config.name] else { continue }
            t.size.record(info.size)
            t.maxSize.record(info.config.maxSize)
            t.waitingInserts.record(info.waitingInserts)
            t.waitingSamples.record(info.waitingSamples)
            t.insertBlockedSeconds.record(info.insertStats.blockedSeconds)
            t.sampleBlockedSeconds.record(info.sampleStats.blockedSeconds)
            t.insertBlockedCalls.record(info.insertStats.blockedCalls)
            t.sampleBlockedCalls.record(info.sampleStats.blockedCalls)
            t.insertTimeouts.record(info.insertStats.timeouts)
            t.sampleTimeouts.record(info.sampleStats.timeouts)
        }
    }

    /// Refreshes the gauges and returns the Prometheus text exposition (format 0.0.4).
    public func scrape() -> String {
        refresh()
        return registry.emitToString()
    }

    private static func nanoseconds(_ d: Duration) -> Int64 {
        let c = d.components
        return c.seconds * 1_000_000_000 + c.attoseconds / 1_000_000_000
    }
}

/// The instruments of one table.
private struct TableInstruments: Sendable {
    let inserts, samples: CoreMetrics.Counter
    let insertCall, sampleCall: CoreMetrics.Timer
    let size, maxSize, waitingInserts, waitingSamples: CoreMetrics.Gauge
    let insertBlockedSeconds, sampleBlockedSeconds, insertBlockedCalls, sampleBlockedCalls: CoreMetrics.Gauge
    let insertTimeouts, sampleTimeouts: CoreMetrics.Gauge

    init(table: String, factory: PrometheusMetricsFactory) {
        let dims = [("table", table)]
        func gauge(_ label: String) -> CoreMetrics.Gauge { CoreMetrics.Gauge(label: label, dimensions: dims, factory: factory) }
        inserts = CoreMetrics.Counter(label: "loom_replay_inserts_total", dimensions: dims, factory: factory)
        samples = CoreMetrics.Counter(label: "loom_replay_samples_total", dimensions: dims, factory: factory)
        insertCall = CoreMetrics.Timer(label: "loom_replay_insert_call_seconds", dimensions: dims, factory: factory)
        sampleCall = CoreMetrics.Timer(label: "loom_replay_sample_call_seconds", dimensions: dims, factory: factory)
        size = gauge("loom_replay_table_size")
        maxSize = gauge("loom_replay_table_max_size")
        waitingInserts = gauge("loom_replay_waiting_inserts")
        waitingSamples = gauge("loom_replay_waiting_samples")
        insertBlockedSeconds = gauge("loom_replay_insert_blocked_seconds")
        sampleBlockedSeconds = gauge("loom_replay_sample_blocked_seconds")
        insertBlockedCalls = gauge("loom_replay_insert_blocked_calls")
        sampleBlockedCalls = gauge("loom_replay_sample_blocked_calls")
        insertTimeouts = gauge("loom_replay_insert_timeouts")
        sampleTimeouts = gauge("loom_replay_sample_timeouts")
    }
}
