import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// Writes trajectories into a replay service: append steps, create items over the last
/// `k` steps, and `flush` them in one Insert stream.
///
/// Steps are grouped into chunks of up to `chunkLength` steps (a chunk also closes when an
/// item is created); items reference chunks, so overlapping items share data. Each flush
/// sends every chunk its items need once, followed by the items. Chunks older than
/// `maxSequenceLength` steps are dropped after a flush.
///
/// Not thread-safe: use a writer from one task at a time.
public final class TrajectoryWriter {
    /// The connection used.
    public let client: ReplayClient
    /// Steps per chunk (>= 1).
    public let chunkLength: Int
    /// The longest item `createItem` accepts (>= 1); also how much history is kept.
    public let maxSequenceLength: Int

    private var pendingSteps: [[Tensor]] = []
    private var chunks: [(start: Int, chunk: Chunk)] = []
    private var pendingItems: [Loom_Replay_ItemData] = []
    private var stepShapes: [(dtype: DType, shape: [Int])]?
    private var nextKey: UInt64
    /// Steps appended so far.
    public private(set) var stepCount = 0

    /// A writer; throws `.invalidArgument` when `chunkLength` or `maxSequenceLength` is < 1.
    public init(client: ReplayClient, chunkLength: Int = 1, maxSequenceLength: Int = 64) throws(ReplayError) {
        guard chunkLength >= 1 else { throw ReplayError(.invalidArgument, "writer: chunkLength \(chunkLength) must be >= 1") }
        guard maxSequenceLength >= 1 else {
            throw ReplayError(.invalidArgument, "writer: maxSequenceLength \(maxSequenceLength) must be >= 1")
        }
        self.client = client
        self.chunkLength = chunkLength
        self.maxSequenceLength = maxSequenceLength
        // Random 32-bit prefix + counter: keys of concurrent writers do not collide in practice.
        nextKey = UInt64.random(in: 1...UInt64(UInt32.max)) << 32
    }

    /// Items created and not yet flushed.
    public var pendingItemCount: Int { pendingItems.count }

    /// Appends one step: one tensor per column (without the step dimension). Every step
    /// must match the first one's column count, dtypes and shapes.
    public func append(_ step: [Tensor]) throws(ReplayError) {
        let shapes = step.map { (dtype: $0.dtype, shape: $0.shape) }
        if let expected = stepShapes {
            guard shapes.count == expected.count else {
                throw ReplayError(.invalidArgument, "writer step \(stepCount): \(shapes.count) columns, expected \(expected.count)")
            }
            for (i, (a, b)) in zip(shapes, expected).enumerated() where a.dtype != b.dtype || a.shape != b.shape {
                throw ReplayError(.invalidArgument,
                                  "writer step \(stepCount) column \(i): \(a.dtype) \(a.shape), expected \(b.dtype) \(b.shape) like step 0")
            }
        } else {
            guard !step.isEmpty else { throw ReplayError(.invalidArgument, "writer step \(stepCount): expected at least one column") }
            stepShapes = shapes
        }
        pendingSteps.append(step)
        stepCount += 1
        if pendingSteps.count >= chunkLength { try closeChunk() }
    }

    /// Creates an item of `table` over the last `numSteps` steps with `priority`; it is
    /// sent by the next `flush`. Returns the item key. Throws when `numSteps` is not in
    /// 1...min(steps appended, maxSequenceLength).
    @discardableResult
    public func createItem(table: String, priority: Double, numSteps: Int) throws(ReplayError) -> UInt64 {
        let limit = Swift.min(stepCount, maxSequenceLength)
        guard numSteps >= 1, numSteps <= limit else {
            throw ReplayError(.invalidArgument,
                              "writer item for '\(table)': numSteps \(numSteps) must be in 1...\(limit) (steps appended \(stepCount), maxSequenceLength \(maxSequenceLength))")
        }
        try closeChunk()
        let from = stepCount - numSteps
        var item = Loom_Replay_ItemData()
        item.key = takeKey()
        item.table = table
        item.priority = priority
        var offset: Int?
        for (start, chunk) in chunks where start + chunk.length > from {
            if offset == nil { offset = from - start }
            item.chunkKeys.append(chunk.key)
        }
        item.offset = Int64(offset ?? 0)
        item.length = Int64(numSteps)
        pendingItems.append(item)
        return item.key
    }

    /// Sends the pending items (and the chunks they use) in one Insert stream; each insert
    /// may wait `timeout` for the rate limiter (nil = forever). Returns the number
    /// inserted. On error the pending items are dropped (some may have been inserted).
    @discardableResult
    public func flush(timeout: Duration? = nil) async throws -> UInt64 {
        guard !pendingItems.isEmpty else { return 0 }
        let items = pendingItems
        pendingItems = []
        var needed = Set<UInt64>()
        for it in items { needed.formUnion(it.chunkKeys) }
        var request = Loom_Replay_InsertRequest()
        for (_, chunk) in chunks where needed.contains(chunk.key) {
            var c = Loom_Replay_ChunkData()
            c.key = chunk.key
            c.columns = chunk.columns.map(Loom_Replay_TensorData.init)
            request.chunks.append(c)
        }
        request.items = items
        request.timeoutMs = timeout.map(ReplayClient.milliseconds) ?? 0
        defer { prune() }
        return try await client.insert([request])
    }

    private func takeKey() -> UInt64 {
        defer { nextKey &+= 1 }
        return nextKey
    }

    /// Turns the pending steps into a chunk.
    private func closeChunk() throws(ReplayError) {
        guard let first = pendingSteps.first else { return }
        var columns: [Tensor] = []
        for c in 0..<first.count { columns.append(Tensor.stack(pendingSteps.map { $0[c] }, dim: 0)) }
        let start = stepCount - pendingSteps.count
        chunks.append((start, try Chunk(key: takeKey(), columns: columns)))
        pendingSteps = []
    }

    /// Drops chunks no future item can reach.
    private func prune() {
        let keepFrom = stepCount - maxSequenceLength
        chunks.removeAll { $0.start + $0.chunk.length <= keepFrom }
    }
}
