import Foundation
import GRPCCore
import ReplayClient
import TensorCore
import XCTest

/// Runs the `loom-replay` executable: serve, insert with a token, SIGTERM with
/// `--checkpoint-on-exit`, restart from the checkpoint.
final class LoomReplayCommandTests: XCTestCase {
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
}
