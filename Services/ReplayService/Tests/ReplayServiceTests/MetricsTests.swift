import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import ReplayClient
import ReplayService
import ReplayStorage
import TensorCore
import XCTest

/// GET over loopback; returns status and body.
func httpGet(_ url: String) async throws -> (Int, String) {
    let (data, response) = try await URLSession.shared.data(from: URL(string: url)!)
    return ((response as? HTTPURLResponse)?.statusCode ?? -1, String(decoding: data, as: UTF8.self))
}

/// The value of the sample line `name{labels} value` in a Prometheus scrape.
func metricValue(_ text: String, _ series: String) -> Double? {
    for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
        return Double(line.dropFirst(series.count + 1))
    }
    return nil
}

final class MetricsTests: XCTestCase {
    /// Insert 5 items in two tables' worth of calls, sample 3, then scrape /metrics over
    /// loopback: counters, sizes and call histograms carry those numbers; other paths 404.
    func testPrometheusEndpointReportsInsertsSamplesSizes() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t", maxSize: 4), try uniformTable("u")])
        let metrics = ReplayMetrics(replay: replay)
        let service = try await RunningService(replay: replay, metrics: metrics)
        let endpoint = MetricsEndpoint(metrics: metrics, host: "127.0.0.1", port: 0)
        let mport = try await endpoint.start()
        let client = try service.client()
        let writer = try TrajectoryWriter(client: client)
        for i in 0..<5 {
            try writer.append([try Tensor([Float(i)], shape: [1])])
            try writer.createItem(table: "t", priority: 1, numSteps: 1)
            if i == 1 { try await writer.send() }
        }
        try writer.createItem(table: "u", priority: 1, numSteps: 1)
        let inserted = try await writer.flush()
        XCTAssertEqual(inserted, 6)
        _ = try await client.sample(table: "t", count: 3, batchSize: 1, timeout: .seconds(5))

        let (status, text) = try await httpGet("http://127.0.0.1:\(mport)/metrics")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(metricValue(text, #"loom_replay_inserts_total{table="t"}"#), 5, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_inserts_total{table="u"}"#), 1, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_samples_total{table="t"}"#), 3, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_samples_total{table="u"}"#), 0, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_table_size{table="t"}"#), 4, text)  // max size 4: one evicted
        XCTAssertEqual(metricValue(text, #"loom_replay_table_max_size{table="t"}"#), 4, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_table_size{table="u"}"#), 1, text)
        // Three sample calls (batch 1) were timed; two insert messages for t.
        XCTAssertEqual(metricValue(text, #"loom_replay_sample_call_seconds_count{table="t"}"#), 3, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_insert_call_seconds_count{table="t"}"#), 2, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_sample_blocked_calls{table="t"}"#), 0, text)
        XCTAssertTrue(text.contains("# TYPE loom_replay_inserts_total counter"), text)

        let (missing, _) = try await httpGet("http://127.0.0.1:\(mport)/other")
        XCTAssertEqual(missing, 404)
        await client.close()
        try await endpoint.stop()
        try await service.stop()
    }

    /// A sample that waits for data shows up in the blocked-time gauges.
    func testBlockedSampleTimeIsReported() async throws {
        let replay = try ReplayServer(tables: [try uniformTable("t")])
        let metrics = ReplayMetrics(replay: replay)
        let service = try await RunningService(replay: replay, metrics: metrics)
        let client = try service.client()
        let waiter = Task { try await client.sample(table: "t", count: 1, timeout: .seconds(20)) }
        try await Task.sleep(for: .milliseconds(300))
        XCTAssertEqual(metricValue(metrics.scrape(), #"loom_replay_waiting_samples{table="t"}"#), 1)
        let writer = try TrajectoryWriter(client: client)
        try writer.append([try Tensor([Float(1)], shape: [1])])
        try writer.createItem(table: "t", priority: 1, numSteps: 1)
        try await writer.flush()
        _ = try await waiter.value
        let text = metrics.scrape()
        XCTAssertEqual(metricValue(text, #"loom_replay_sample_blocked_calls{table="t"}"#), 1, text)
        XCTAssertGreaterThan(metricValue(text, #"loom_replay_sample_blocked_seconds{table="t"}"#) ?? 0, 0.2, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_waiting_samples{table="t"}"#), 0, text)
        await client.close()
        try await service.stop()
    }
}
