import ArgumentParser
import Foundation
import ReplayClient
import ReplayService
import ReplayStorage
import Synchronization
import TensorCore

/// `loom-replay bench`: throughput of a `loom-replay serve` process (started here, in its
/// own process) measured by clients over loopback; one JSON object per line per row.
///
/// Rows, for each payload and each selector used as the sampler (remover FIFO, MinSize(1)):
/// `insert` (items/s through the streaming `TrajectoryWriter`, one step per item, counted
/// from the server's confirmation at the end of the stream), `sample_b1` (samples/s consumed
/// one at a time through `ReplaySamples`: 256 samples in flight on 2 SampleStream calls, responses
/// of up to 64 items) and `sample_b256` (samples/s in batches of 256, 2 streams in flight;
/// frames come in responses of 64 joined on the client); each sampling worker on its own
/// connection (`--no-connection-per-worker`: all on the bench client's); sampled frames are
/// tensors over the received message bytes (`--no-adopt-message-bytes`: copies).
/// Plus `ratio4` per payload: a SampleToInsertRatio(4) table with one inserter and one
/// sampler process (`loom-replay bench-worker`), rates taken from the server's counters.
struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Benchmark a loom-replay server process over loopback (JSONL on stdout).")

    @Option(help: "Seconds each row is measured.")
    var seconds: Double = 3

    @Option(help: "Measurements per row (one JSON line each).")
    var repeats: Int = 1

    @Option(help: "Warm-up seconds before each row's first measurement.")
    var warmup: Double = 0.5

    @Option(help: "Comma-separated payloads: f32x100 (float32[100] per step), u8x84x84x4 (uint8 frame per step).")
    var payloads: String = "f32x100,u8x84x84x4"

    @Option(help: "Comma-separated sampler selectors: fifo, lifo, uniform, prioritized (exponent 0.8), maxheap, minheap.")
    var selectors: String = "fifo,lifo,uniform,prioritized,maxheap,minheap"

    @Option(help: "Comma-separated rows: insert, sample_b1, sample_b256, ratio4.")
    var metrics: String = "insert,sample_b1,sample_b256,ratio4"

    @Option(help: "Append the JSON lines to this file too.")
    var out: String?

    @Option(help: "The loom-replay executable that serves (default: this one).")
    var server: String?

    @Option(name: .customLong("b1-in-flight"), help: "sample_b1: samples requested ahead of the consumer, at most (Reverb's side: 256).")
    var b1InFlight: Int = 256

    @Option(name: .customLong("b1-workers"), help: "sample_b1: SampleStream calls (one per worker).")
    var b1Workers: Int = 2

    @Option(name: .customLong("b1-flexible-batch"), help: "sample_b1: items per response message.")
    var b1FlexibleBatch: Int = 64

    @Option(name: .customLong("b256-workers"), help: "sample_b256 (and the ratio4 sampler): Sample streams in flight.")
    var b256Workers: Int = 2

    @Option(name: .customLong("b256-response-items"), help: "sample_b256 (and the ratio4 sampler): items per response message (0: the payload's default, 256 for f32x100, 64 for frames).")
    var b256ResponseItems: Int = 0

    @Flag(name: .customLong("connection-per-worker"), inversion: .prefixedNo,
          help: "Sampling workers open one connection each (default) instead of sharing the bench client's.")
    var connectionPerWorker = true

    @Flag(name: .customLong("adopt-message-bytes"), inversion: .prefixedNo,
          help: "Sampled frames are tensors over the received message bytes (default) instead of copies.")
    var adoptMessageBytes = true

    @Option(help: "Wire of the bench clients: http2 (gRPC over HTTP/2) or framed (the same RPCs over Loom's framed TCP transport).")
    var transport: String = "http2"

    func validate() throws {
        guard ReplayClient.ReplayTransport(rawValue: transport) != nil else {
            throw ValidationError("--transport \(transport): expected http2 or framed")
        }
        guard seconds > 0 else { throw ValidationError("--seconds \(seconds): expected > 0") }
        guard repeats >= 1 else { throw ValidationError("--repeats \(repeats): expected >= 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup \(warmup): expected >= 0") }
        guard b256Workers >= 1, b256ResponseItems >= 0 else {
            throw ValidationError("--b256-workers \(b256Workers), --b256-response-items \(b256ResponseItems): expected workers >= 1, response items >= 0")
        }
        guard b1Workers >= 1, b1InFlight >= b1Workers, b1FlexibleBatch >= 1 else {
            throw ValidationError("--b1-workers \(b1Workers), --b1-in-flight \(b1InFlight), --b1-flexible-batch \(b1FlexibleBatch): expected workers >= 1, in-flight >= workers, flexible batch >= 1")
        }
        for p in list(payloads) where BenchPayload(name: p) == nil {
            throw ValidationError("--payloads: unknown payload '\(p)'; expected f32x100 or u8x84x84x4")
        }
        for s in list(selectors) where benchSelector(s) == nil {
            throw ValidationError("--selectors: unknown selector '\(s)'; expected fifo, lifo, uniform, prioritized, maxheap or minheap")
        }
        for m in list(metrics) where !["insert", "sample_b1", "sample_b256", "ratio4"].contains(m) {
            throw ValidationError("--metrics: unknown row '\(m)'; expected insert, sample_b1, sample_b256 or ratio4")
        }
    }

    func run() async throws {
        SystemAllocator.keepLargeBlocksInHeap()
        let exe = server ?? selfExecutable()
        let rows = Set(list(metrics))
        let outHandle: FileHandle? = try out.map { path in
            if !FileManager.default.fileExists(atPath: path) { _ = FileManager.default.createFile(atPath: path, contents: nil) }
            let h = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            h.seekToEndOfFile()
            return h
        }
        func emit(_ line: String) {
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
            outHandle?.write(Data((line + "\n").utf8))
        }
        for payloadName in list(payloads) {
            let payload = BenchPayload(name: payloadName)!
            let sels = list(selectors)
            let withRatio = rows.contains("ratio4")
            let wire = ReplayClient.ReplayTransport(rawValue: transport)!
            let server = try BenchServer.start(executable: exe, payload: payload, selectors: sels, withRatio: withRatio,
                                               framed: wire == .framed)
            defer { server.stop() }
            let client = try ReplayClient(port: server.clientPort, adoptMessageBytes: adoptMessageBytes, transport: wire)
            let steps = payload.stepPool(count: 64)
            for sel in sels {
                let table = "bench_\(sel)"
                if rows.contains("insert") {
                    try await client.reset(table: table)
                    _ = try await measureInsert(client: client, table: table, steps: steps, payload: payload, seconds: warmup)
                    for _ in 0..<repeats {
                        try await client.reset(table: table)
                        let rate = try await measureInsert(client: client, table: table, steps: steps, payload: payload, seconds: seconds)
                        emit(jsonLine(payload: payload.name, selector: sel, metric: "insert", rate: rate))
                    }
                }
                if rows.contains("sample_b1") || rows.contains("sample_b256") {
                    try await client.reset(table: table)
                    let filled = try await prefill(client: client, table: table, steps: steps, payload: payload, count: payload.prefill)
                    guard filled == payload.prefill else {
                        throw ValidationError("prefill of \(table): \(filled) items inserted, expected \(payload.prefill)")
                    }
                    if rows.contains("sample_b1") {
                        _ = try await measureSingleSamples(client: client, table: table, seconds: warmup)
                        for _ in 0..<repeats {
                            let rate = try await measureSingleSamples(client: client, table: table, seconds: seconds)
                            emit(jsonLine(payload: payload.name, selector: sel, metric: "sample_b1", rate: rate))
                        }
                    }
                    if rows.contains("sample_b256") {
                        _ = try await measureSample(client: client, table: table, batch: 256, workers: b256Workers,
                                              responseItems: responseItems(payload), seconds: warmup)
                        for _ in 0..<repeats {
                            let rate = try await measureSample(client: client, table: table, batch: 256, workers: b256Workers,
                                                             responseItems: responseItems(payload), seconds: seconds)
                            emit(jsonLine(payload: payload.name, selector: sel, metric: "sample_b256", rate: rate))
                        }
                    }
                }
                try await client.reset(table: table)
            }
            if withRatio {
                for _ in 0..<repeats {
                    let r = try await measureRatio(client: client, server: server, executable: exe, payload: payload)
                    emit(jsonLine(payload: payload.name, selector: "uniform", metric: "ratio4", rate: r.samplesPerSecond,
                                  extra: String(format: #","inserts_per_s":%.1f,"observed_ratio":%.3f"#, r.insertsPerSecond, r.ratio)))
                }
            }
            await client.close()
        }
        try outHandle?.close()
    }

    /// Items per response message of the batch rows.
    func responseItems(_ payload: BenchPayload) -> Int { b256ResponseItems > 0 ? b256ResponseItems : payload.responseItems }

    /// Items/s of the streaming writer over `seconds`: one step per item, 128 (f32) or 16
    /// (frames) items per message, 8 messages queued at most; the count is the server's.
    func measureInsert(client: ReplayClient, table: String, steps: [Tensor], payload: BenchPayload,
                       seconds: Double) async throws -> Double {
        guard seconds > 0 else { return 0 }
        let writer = try TrajectoryWriter(client: client, chunkLength: 1, maxSequenceLength: 1, maxQueuedMessages: 8)
        var rng = SplitMix(seed: 0x5EED)
        let clock = ContinuousClock()
        let start = clock.now
        let limit = Duration.seconds(seconds)
        var i = 0
        while clock.now - start < limit {
            for _ in 0..<payload.itemsPerMessage {
                try writer.append([steps[i % steps.count]])
                try writer.createItem(table: table, priority: rng.nextPriority(), numSteps: 1)
                i += 1
            }
            try await writer.send(timeout: .seconds(30))
        }
        let inserted = try await writer.flush(timeout: .seconds(30))
        let elapsed = clock.now - start
        return Double(inserted) / elapsed.seconds
    }

    /// Inserts `count` items (not timed).
    func prefill(client: ReplayClient, table: String, steps: [Tensor], payload: BenchPayload, count: Int) async throws -> Int {
        trace("prefill \(table) with \(count)")
        defer { trace("prefill done") }
        let writer = try TrajectoryWriter(client: client, chunkLength: 1, maxSequenceLength: 1, maxQueuedMessages: 8)
        var rng = SplitMix(seed: 0xF111)
        for i in 0..<count {
            try writer.append([steps[i % steps.count]])
            try writer.createItem(table: table, priority: rng.nextPriority(), numSteps: 1)
            if (i + 1) % payload.itemsPerMessage == 0 { try await writer.send(timeout: .seconds(30)) }
        }
        return Int(try await writer.flush(timeout: .seconds(30)))
    }

    /// `sample_b1`: samples/s consumed one at a time (`ReplaySamples.Iterator.next()`, one
    /// sample per call) over `seconds`, with `b1Workers` SampleStream calls and at most
    /// `b1InFlight` samples requested ahead of the consumer, responses of up to
    /// `b1FlexibleBatch` items. Like Reverb's side: its client sampler with 256 samples in
    /// flight, `GetNextTrajectory()` once per sample, the clock read every 16 samples.
    func measureSingleSamples(client: ReplayClient, table: String, seconds: Double) async throws -> Double {
        guard seconds > 0 else { return 0 }
        let sampler = try ReplaySampler(client: client, table: table, batchSize: 1, timeout: .seconds(30))
        var samples = try sampler.samples(workers: b1Workers, maxInFlight: b1InFlight, flexibleBatchSize: b1FlexibleBatch,
                                          connectionPerWorker: connectionPerWorker)
            .makeAsyncIterator()
        trace("sample \(table) one at a time, \(b1Workers) workers, \(b1InFlight) in flight, flexible batch \(b1FlexibleBatch), for \(seconds)s")
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + .seconds(seconds)
        var n = 0
        var check = 0
        var now = start
        while now < deadline {
            for _ in 0..<16 {
                guard let s = try await samples.next() else { throw ValidationError("sample_b1: the sample stream of \(table) ended") }
                // Touch the data like a learner would (the column's element count).
                check &+= s.item.column(0).count
            }
            n += 16
            now = clock.now
        }
        let elapsed = (now - start).seconds
        let left = try await samples.stop()
        guard check > 0 else { throw ValidationError("sample_b1: empty samples") }
        trace("sample done: \(n) in \(elapsed)s (\(left.count) received, not consumed)")
        return Double(n) / elapsed
    }

    /// Samples/s over `seconds` with `workers` Sample streams in flight, batches of `batch`.
    func measureSample(client: ReplayClient, table: String, batch: Int, workers: Int, responseItems: Int,
                       seconds: Double) async throws -> Double {
        guard seconds > 0 else { return 0 }
        // Responses of up to `responseItems` items joined into batches of `batch` on the
        // client (frames), like Reverb's dataset (flexible batches from the server,
        // `.batch(256)` on the client).
        let sampler = try ReplaySampler(client: client, table: table, batchSize: batch,
                                        flexibleBatchSize: Swift.min(batch, responseItems), timeout: .seconds(30))
        let counter = BenchCounter()
        let clock = ContinuousClock()
        let start = clock.now
        let deadline = start + .seconds(seconds)
        trace("sample \(table) batch \(batch) workers \(workers) for \(seconds)s")
        try await sampler.stream(workers: workers, connectionPerWorker: connectionPerWorker) { samples in
            // Touch the data like a learner would (first byte of each sample's column).
            var check = 0
            for s in samples { check &+= s.item.column(0).count }
            guard check > 0 else { return false }
            if clock.now < deadline {
                counter.add(samples.count)
                return true
            }
            return false
        }
        trace("sample done: \(counter.value) in \(clock.now - start)")
        // Only batches that arrived before the deadline count.
        return Double(counter.value) / seconds
    }

    struct RatioResult {
        var insertsPerSecond: Double
        var samplesPerSecond: Double
        var ratio: Double
    }

    /// One inserter and one sampler process against the `bench_ratio4` table; rates from the
    /// server's counters over `seconds` after a warm-up.
    func measureRatio(client: ReplayClient, server: BenchServer, executable: String, payload: BenchPayload) async throws -> RatioResult {
        let table = "bench_ratio4"
        try await client.reset(table: table)
        let total = warmup + seconds + 1
        let common = ["bench-worker", "--port", "\(server.clientPort)", "--transport", transport, "--table", table, "--payload", payload.name,
                      "--seconds", "\(total + 5)", "--workers", "\(b256Workers)", "--response-items", "\(responseItems(payload))",
                      connectionPerWorker ? "--connection-per-worker" : "--no-connection-per-worker",
                      adoptMessageBytes ? "--adopt-message-bytes" : "--no-adopt-message-bytes"]
        let inserter = try spawn(executable, common + ["--role", "insert"])
        let sampler = try spawn(executable, common + ["--role", "sample"])
        defer {
            for p in [inserter, sampler] where p.isRunning {
                p.terminate()
                p.waitUntilExit()
            }
        }
        // Wait until both are moving, then the warm-up.
        let clock = ContinuousClock()
        let ready = clock.now + .seconds(20)
        while clock.now < ready {
            let info = try await counters(client: client, table: table)
            if info.samples > 0 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        try await Task.sleep(for: .seconds(warmup))
        let a = try await counters(client: client, table: table)
        let t0 = clock.now
        try await Task.sleep(for: .seconds(seconds))
        let b = try await counters(client: client, table: table)
        let dt = (clock.now - t0).seconds
        for p in [inserter, sampler] where !p.isRunning && p.terminationStatus != 0 {
            throw ValidationError("ratio4: bench-worker exited with status \(p.terminationStatus)")
        }
        let di = Double(b.inserts - a.inserts), ds = Double(b.samples - a.samples)
        return RatioResult(insertsPerSecond: di / dt, samplesPerSecond: ds / dt, ratio: di > 0 ? ds / di : 0)
    }

    func counters(client: ReplayClient, table: String) async throws -> (inserts: Int64, samples: Int64) {
        guard let t = try await client.serverInfo().first(where: { $0.name == table }) else {
            throw ValidationError("server has no table \(table)")
        }
        return (t.inserts, t.samples)
    }

    func jsonLine(payload: String, selector: String, metric: String, rate: Double, extra: String = "") -> String {
        #"{"system":"loom","transport":"\#(transport)","payload":"\#(payload)","selector":"\#(selector)","metric":"\#(metric)","items_per_s":\#(String(format: "%.1f", rate))\#(extra)}"#
    }
}
