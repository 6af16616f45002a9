import ReplayStorage
import Synchronization

/// Draws batches of samples from one table: each `next()` asks for `batchSize` items in a
/// single Sample call, streamed in flexible batches of `flexibleBatchSize`.
public struct ReplaySampler: Sendable {
    /// The connection used.
    public let client: ReplayClient
    /// The table sampled.
    public let table: String
    /// Items per `next()`.
    public let batchSize: Int
    /// Items per streamed response (0 = the whole batch in one response).
    public let flexibleBatchSize: Int
    /// How long each streamed response may wait for data (nil = forever).
    public let timeout: Duration?

    /// A sampler of `table`; throws `.invalidArgument` when `batchSize < 1` or
    /// `flexibleBatchSize < 0`.
    public init(client: ReplayClient, table: String, batchSize: Int, flexibleBatchSize: Int = 0,
                timeout: Duration? = nil) throws(ReplayError) {
        guard batchSize >= 1 else { throw ReplayError(.invalidArgument, "sampler of '\(table)': batchSize \(batchSize) must be >= 1") }
        guard flexibleBatchSize >= 0 else {
            throw ReplayError(.invalidArgument, "sampler of '\(table)': flexibleBatchSize \(flexibleBatchSize) must be >= 0")
        }
        self.client = client
        self.table = table
        self.batchSize = batchSize
        self.flexibleBatchSize = flexibleBatchSize
        self.timeout = timeout
    }

    /// The next `batchSize` samples (blocking until the table's rate limiter allows them).
    public func next() async throws -> [ReplaySample] {
        try await client.sample(table: table, count: batchSize, batchSize: flexibleBatchSize, timeout: timeout)
    }

    /// Streams batches of up to `batchSize` samples on `workers` concurrent workers
    /// (several batches in flight; no round trip per batch), `limit` samples in all (split
    /// between the workers). Each worker issues Sample calls of `samplesPerCall` samples
    /// (default: 8 batches, at least 256) back to back, so the server never samples more
    /// than one call ahead of a worker that stops. With `flexibleBatchSize` set (below
    /// `batchSize`), the server sends responses of that many items and the worker joins
    /// them into batches of `batchSize` (the last of a call may be smaller): large
    /// responses (a batch of 256 frames is 7 MiB) cost more in gRPC's buffering than
    /// several smaller ones. `onBatch` is called concurrently from the
    /// workers and returns false to stop its worker (the rest of that worker's current call
    /// is read and dropped, so the call ends normally). Returns when every worker stopped
    /// or reached its share. With `connectionPerWorker` (default), each worker opens its own
    /// HTTP/2 connection (`ReplayClient.connect()`, closed when it ends) instead of sharing
    /// this sampler's (see `samples(...)`).
    public func stream(workers: Int = 2, limit: Int = Int(Int32.max), samplesPerCall: Int? = nil,
                       connectionPerWorker: Bool = true,
                       onBatch: @escaping @Sendable ([ReplaySample]) async throws -> Bool) async throws {
        let workers = Swift.max(1, workers)
        let perCall = Swift.max(1, samplesPerCall ?? Swift.max(256, 8 * batchSize))
        let client = self.client, table = self.table, batchSize = self.batchSize, timeout = self.timeout
        let wireBatch = flexibleBatchSize > 0 ? Swift.min(flexibleBatchSize, batchSize) : batchSize
        try await withThrowingTaskGroup(of: Void.self) { group in
            for w in 0..<workers {
                let share = limit / workers + (w < limit % workers ? 1 : 0)
                guard share > 0 else { continue }
                group.addTask {
                    let own = connectionPerWorker ? try client.connect() : nil
                    do {
                        try await Self.work(client: own ?? client, table: table, share: share, perCall: perCall,
                                            batchSize: batchSize, wireBatch: wireBatch, timeout: timeout, onBatch: onBatch)
                    } catch {
                        await own?.close()
                        throw error
                    }
                    await own?.close()
                }
            }
            try await group.waitForAll()
        }
    }
}

extension ReplaySampler {
    /// One worker of `stream`: Sample calls of `perCall` items back to back until `share`
    /// samples were delivered or `onBatch` returned false.
    private static func work(client: ReplayClient, table: String, share: Int, perCall: Int, batchSize: Int, wireBatch: Int,
                             timeout: Duration?, onBatch: @escaping @Sendable ([ReplaySample]) async throws -> Bool) async throws {
        let stopped = StopFlag()
        var remaining = share
        while remaining > 0 && !stopped.isSet {
            let n = Swift.min(perCall, remaining)
            let pending = BatchJoiner(capacity: batchSize)
            try await client.sample(table: table, count: n, batchSize: wireBatch, timeout: timeout) { response in
                if stopped.isSet { return true }  // drain
                guard let batch = pending.add(response) else { return true }
                if try await !onBatch(batch) { stopped.set() }
                return true
            }
            if !stopped.isSet, let rest = pending.flush(), try await !onBatch(rest) { stopped.set() }
            remaining -= n
        }
    }
}

/// A one-way flag shared by a worker's calls.
private final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

/// Joins a call's responses into batches of `capacity` (used by one worker's response
/// handler at a time). `@unchecked Sendable`: the handler runs on one task, and `flush` after
/// the call returned.
private final class BatchJoiner: @unchecked Sendable {
    let capacity: Int
    var samples: [ReplaySample] = []

    init(capacity: Int) { self.capacity = capacity }

    /// A full batch once `capacity` samples are together (a response that already has
    /// them goes through untouched; responses are at most `capacity` long, so one add
    /// completes at most one batch).
    func add(_ response: [ReplaySample]) -> [ReplaySample]? {
        if samples.isEmpty && response.count >= capacity { return response }
        if samples.isEmpty { samples.reserveCapacity(capacity) }
        samples += response
        guard samples.count >= capacity else { return nil }
        if samples.count == capacity {
            defer { samples = [] }
            return samples
        }
        let full = Array(samples[..<capacity])
        samples.removeFirst(capacity)
        return full
    }

    /// What is left at the end of a call, if anything.
    func flush() -> [ReplaySample]? {
        guard !samples.isEmpty else { return nil }
        defer { samples = [] }
        return samples
    }
}
