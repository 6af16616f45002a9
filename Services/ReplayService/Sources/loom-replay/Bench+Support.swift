import ArgumentParser
import Foundation
import ReplayClient
import ReplayService
import ReplayStorage
import Synchronization
import TensorCore

/// A payload kind: its step tensor, items per Insert message, prefill for sampling, and
/// items per Sample response for batches of 256 (`responseItems`: whole batches for f32,
/// 64 frames = 1.8 MB per response for frames, where a 7 MB response measured slower than
/// four joined on the client; whole f32 batches measured faster than joined ones).
struct BenchPayload {
    let name: String
    let shape: [Int]
    let dtype: DType
    let itemsPerMessage: Int
    let prefill: Int
    let maxSize: Int
    let responseItems: Int

    init?(name: String) {
        switch name {
        case "f32x100":
            self.name = name; shape = [100]; dtype = .float32; itemsPerMessage = 128; prefill = 10_000; maxSize = 1_000_000
            responseItems = 256
        case "u8x84x84x4":
            self.name = name; shape = [84, 84, 4]; dtype = .uint8; itemsPerMessage = 16; prefill = 2_000; maxSize = 20_000
            responseItems = 64
        default:
            return nil
        }
    }

    /// `count` distinct steps with pseudo-random contents.
    func stepPool(count: Int) -> [Tensor] {
        var rng = SplitMix(seed: 42)
        let n = shape.reduce(1, *)
        return (0..<count).map { _ in
            if dtype == .float32 {
                return try! Tensor((0..<n).map { _ in Float(rng.next() % 1000) / 1000 }, shape: shape)
            }
            return try! Tensor((0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, shape: shape)
        }
    }
}

/// A `loom-replay serve` child process with the bench tables.
final class BenchServer {
    let process: Process
    let port: Int
    /// The framed transport's port (nil when not asked for).
    let framedPort: Int?
    /// The port bench clients use: the framed one when served, else the HTTP/2 one.
    var clientPort: Int { framedPort ?? port }
    let dir: URL

    private init(process: Process, port: Int, framedPort: Int?, dir: URL) {
        self.process = process
        self.port = port
        self.framedPort = framedPort
        self.dir = dir
    }

    static func start(executable: String, payload: BenchPayload, selectors: [String], withRatio: Bool,
                      framed: Bool = false) throws -> BenchServer {
        var tables: [TableConfig] = []
        for s in selectors {
            tables.append(TableConfig(name: "bench_\(s)", sampler: benchSelector(s)!, remover: .fifo, maxSize: payload.maxSize,
                                      rateLimiter: try .minSize(1)))
        }
        if withRatio {
            tables.append(TableConfig(name: "bench_ratio4", sampler: .uniform, remover: .fifo, maxSize: payload.maxSize,
                                      rateLimiter: try .sampleToInsertRatio(samplesPerInsert: 4, minSizeToSample: 100, errorBuffer: 400)))
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("loom-replay-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("tables.json")
        try JSONEncoder().encode(["tables": tables]).write(to: config)
        var args = ["serve", "--config", config.path, "--port", "0"]
        if framed { args += ["--framed-port", "0"] }
        // For diagnosis: LOOM_BENCH_METRICS_PORT=N serves the bench server's metrics on N.
        if let m = ProcessInfo.processInfo.environment["LOOM_BENCH_METRICS_PORT"] { args += ["--metrics-port", m] }
        let process = try spawn(executable, args, captureOutput: true)
        guard let pipe = process.standardOutput as? Pipe else { throw ValidationError("serve: no stdout pipe") }
        var text = ""
        while !text.contains("\n") {
            let data = pipe.fileHandleForReading.availableData
            guard !data.isEmpty else { break }
            text += String(decoding: data, as: UTF8.self)
        }
        guard let range = text.range(of: #"127\.0\.0\.1:(\d+)"#, options: .regularExpression),
              let port = Int(text[range].split(separator: ":").last ?? "") else {
            process.terminate()
            throw ValidationError("loom-replay serve printed no port: \(text)")
        }
        var framedPort: Int?
        if framed {
            guard let r = text.range(of: #"framed on 127\.0\.0\.1:(\d+)"#, options: .regularExpression),
                  let p = Int(text[r].split(separator: ":").last ?? "") else {
                process.terminate()
                throw ValidationError("loom-replay serve printed no framed port: \(text)")
            }
            framedPort = p
        }
        return BenchServer(process: process, port: port, framedPort: framedPort, dir: dir)
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(at: dir)
    }
}

/// With LOOM_BENCH_TRACE set, progress lines on stderr.
func trace(_ message: @autoclosure () -> String) {
    if ProcessInfo.processInfo.environment["LOOM_BENCH_TRACE"] != nil {
        FileHandle.standardError.write(Data("bench: \(Date().timeIntervalSince1970) \(message())\n".utf8))
    }
}

func benchSelector(_ name: String) -> SelectorConfig? {
    switch name {
    case "fifo": return .fifo
    case "lifo": return .lifo
    case "uniform": return .uniform
    case "prioritized": return .prioritized(priorityExponent: 0.8)
    case "maxheap": return .maxHeap
    case "minheap": return .minHeap
    default: return nil
    }
}

func list(_ s: String) -> [String] { s.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } }

func selfExecutable() -> String {
    (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
}

@discardableResult
func spawn(_ executable: String, _ args: [String], captureOutput: Bool = false) throws -> Process {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = args
    if captureOutput { p.standardOutput = Pipe() }
    try p.run()
    return p
}

/// A counter shared by the sampling workers.
final class BenchCounter: Sendable {
    private let count = Atomic<Int>(0)
    func add(_ n: Int) { count.add(n, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// SplitMix64: deterministic bench data and priorities.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// A priority in (0, 1].
    mutating func nextPriority() -> Double { Double(next() >> 11 &+ 1) / Double(1 << 53) }
}

extension Duration {
    var seconds: Double {
        let c = components
        return Double(c.seconds) + Double(c.attoseconds) * 1e-18
    }
}

extension Double {
    func clamped(minimum: Double) -> Double { Swift.max(self, minimum) }
}
