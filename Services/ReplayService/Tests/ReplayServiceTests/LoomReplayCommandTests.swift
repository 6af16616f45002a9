import Foundation
import GRPCCore
import ReplayClient
import ReplayService
import TensorCore
import XCTest

/// Runs the `loom-replay` executable: serve, insert with a token, SIGTERM with
/// `--checkpoint-on-exit`, restart from the checkpoint.
final class LoomReplayCommandTests: XCTestCase {
    /// What `serve` read from each process's stdout so far.
    var servedText: [ObjectIdentifier: String] = [:]

    /// The built `loom-replay` next to the test bundle; skips when it is not there.
    func binary() throws -> URL {
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for dir in [bundleDir, bundleDir.deletingLastPathComponent()] {
            let url = dir.appendingPathComponent("loom-replay")
            if FileManager.default.isExecutableFile(atPath: url.path) { return url }
        }
        throw XCTSkip("loom-replay not built next to \(bundleDir.path)")
    }

    /// Starts `loom-replay serve` and returns the process and the port it printed.
    func serve(_ args: [String]) throws -> (Process, Int) {
        let process = Process()
        process.executableURL = try binary()
        process.arguments = ["serve", "--port", "0"] + args
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var text = ""
        while !text.contains("\n") {
            let data = out.fileHandleForReading.availableData
            guard !data.isEmpty else { break }
            text += String(decoding: data, as: UTF8.self)
        }
        servedText[ObjectIdentifier(process)] = text
        guard let range = text.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
              let port = Int(text[range].split(separator: ":").last ?? "") else {
            process.terminate()
            throw XCTSkip("loom-replay printed no port: \(text)")
        }
        return (process, port)
    }

    func testServeCheckpointOnSIGTERMAndRestore() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loom-replay-cli-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: dir) }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("tables.json")
        try Data(#"[{"name": "t", "sampler": {"kind": "uniform"}, "remover": {"kind": "fifo"}, "maxSize": 10, "rateLimiter": {"samplesPerInsert": 1, "minSizeToSample": 1, "minDiff": -1e308, "maxDiff": 1e308}}]"#.utf8).write(to: config)
        let args = ["--config", config.path, "--checkpoint-dir", dir.appendingPathComponent("ckpt").path,
                    "--token", "tok", "--checkpoint-on-exit"]

        let (first, port) = try serve(args)
        let client = try ReplayClient(port: port, token: "tok")
        let writer = try TrajectoryWriter(client: client)
        try writer.append([try Tensor([Float(1.5)], shape: [1])])
        let key = try writer.createItem(table: "t", priority: 1, numSteps: 1)
        try await writer.flush(timeout: .seconds(5))
        await client.close()
        first.terminate()  // SIGTERM
        first.waitUntilExit()
        XCTAssertEqual(first.terminationStatus, 0)

        let (second, port2) = try serve(args)
        let client2 = try ReplayClient(port: port2, token: "tok")
        let samples = try await client2.sample(table: "t", count: 1, timeout: .seconds(5))
        XCTAssertEqual(samples.map(\.info.key), [key])
        XCTAssertEqual(samples[0].item.column(0).withRawBytes { Array($0) },
                       try Tensor([Float(1.5)], shape: [1, 1]).withRawBytes { Array($0) })
        await client2.close()
        second.terminate()
        second.waitUntilExit()
        XCTAssertEqual(second.terminationStatus, 0)
    }

    /// `serve --config tables.yaml --tls-cert --tls-key --token --metrics-port 0`: a TLS
    /// client inserts into the YAML-configured queue, and /metrics counts it.
    func testServeYAMLWithTLSTokenAndMetrics() async throws {
        let (server, port) = try serve(["--config", fixture("tables.yaml"), "--tls-cert", fixture("test-cert.pem"),
                                        "--tls-key", fixture("test-key.pem"), "--token", "tok", "--metrics-port", "0"])
        defer { server.terminate(); server.waitUntilExit() }
        let mport = try readMetricsPort(server)
        let client = try ReplayClient(port: port, token: "tok", tls: try ReplayClientTLS(trustRootsPath: fixture("test-cert.pem")))
        let info = try await client.serverInfo()
        XCTAssertEqual(info.map(\.name), ["replay", "queue"])
        XCTAssertEqual(info.map(\.maxSize), [1000, 100])
        let writer = try TrajectoryWriter(client: client)
        for i in 0..<3 {
            try writer.append([try Tensor([Float(i)], shape: [1])])
            try writer.createItem(table: "queue", priority: 1, numSteps: 1)
        }
        let inserted = try await writer.flush(timeout: .seconds(5))
        XCTAssertEqual(inserted, 3)
        let (status, text) = try await httpGet("http://127.0.0.1:\(mport)/metrics")
        XCTAssertEqual(status, 200)
        XCTAssertEqual(metricValue(text, #"loom_replay_inserts_total{table="queue"}"#), 3, text)
        XCTAssertEqual(metricValue(text, #"loom_replay_table_size{table="queue"}"#), 3, text)
        await client.close()
    }

    /// A config error stops `serve` with a message naming the file and the key.
    func testServeRejectsBadYAML() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loom-replay-bad-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let config = dir.appendingPathComponent("t.yaml")
        try Data("tables:\n  - name: t\n    sampler: {kind: fifo}\n".utf8).write(to: config)
        let process = Process()
        process.executableURL = try binary()
        process.arguments = ["serve", "--config", config.path]
        let err = Pipe()
        process.standardError = err
        try process.run()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        XCTAssertNotEqual(process.terminationStatus, 0)
        XCTAssertTrue(text.contains("\(config.path): tables[0].remover: missing"), text)
    }

    /// Runs `loom-replay bench` with `args`; returns the JSON objects it wrote.
    func bench(_ args: [String]) throws -> [[String: Any]] {
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("bench-\(UUID().uuidString).jsonl")
        defer { try? FileManager.default.removeItem(at: out) }
        let process = Process()
        process.executableURL = try binary()
        process.arguments = ["bench", "--out", out.path] + args
        process.standardOutput = Pipe()
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return try String(contentsOf: out, encoding: .utf8).split(separator: "\n").map { line in
            try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], String(line))
        }
    }

    /// `bench` starts its own server process and writes one JSON line per row with exactly
    /// the agreed keys; ratio4 runs two worker processes and observes a ratio near 4. (Debug
    /// build on a loaded machine: f32 rows for two selectors, and the frame insert row.)
    func testBenchWritesJSONL() throws {
        let rows = try bench(["--seconds", "1", "--warmup", "0.2", "--payloads", "f32x100", "--selectors", "uniform,prioritized"])
            + bench(["--seconds", "0.5", "--warmup", "0", "--payloads", "u8x84x84x4", "--selectors", "fifo", "--metrics", "insert,sample_b256",
                     "--transport", "framed"])
        XCTAssertEqual(rows.count, 2 * 3 + 1 + 2)
        var byName: [String: [String: Any]] = [:]
        for obj in rows {
            let metric = try XCTUnwrap(obj["metric"] as? String)
            var keys = ["system", "transport", "payload", "selector", "metric", "items_per_s"]
            // The frame rows ran over the framed transport (server started with --framed-port).
            XCTAssertEqual(obj["transport"] as? String, obj["payload"] as? String == "u8x84x84x4" ? "framed" : "http2", "\(obj)")
            if metric == "ratio4" { keys += ["inserts_per_s", "observed_ratio"] }
            XCTAssertEqual(Set(obj.keys), Set(keys), "\(obj)")
            XCTAssertEqual(obj["system"] as? String, "loom")
            XCTAssertGreaterThan(obj["items_per_s"] as? Double ?? 0, 0, "\(obj)")
            byName["\(obj["payload"]!)/\(obj["selector"]!)/\(metric)"] = obj
        }
        XCTAssertNotNil(byName["f32x100/prioritized/sample_b256"])
        XCTAssertNotNil(byName["u8x84x84x4/fifo/insert"])
        let ratio = try XCTUnwrap(byName["f32x100/uniform/ratio4"])
        let observed = try XCTUnwrap(ratio["observed_ratio"] as? Double)
        XCTAssertTrue((2.0...6.0).contains(observed), "observed ratio \(observed)")
        XCTAssertGreaterThan(ratio["inserts_per_s"] as? Double ?? 0, 0)
    }

    /// Reads the server's stdout until the metrics line; returns its port.
    func readMetricsPort(_ process: Process) throws -> Int {
        guard let out = process.standardOutput as? Pipe else { throw XCTSkip("no stdout pipe") }
        var text = servedText[ObjectIdentifier(process)] ?? ""
        while !text.contains("/metrics") {
            let data = out.fileHandleForReading.availableData
            guard !data.isEmpty else { break }
            text += String(decoding: data, as: UTF8.self)
        }
        guard let range = text.range(of: #"metrics on http://127\.0\.0\.1:(\d+)"#, options: .regularExpression),
              let port = Int(text[range].split(separator: ":").last ?? "") else {
            throw XCTSkip("loom-replay printed no metrics port: \(text)")
        }
        return port
    }
}
