import GRPCCore
import ReplayService
import ReplayServiceProto
import ReplayStorage
import TensorCore

/// Writes trajectories into a replay service: append steps, create items over the last
/// `k` steps, `send` them on an open InsertStream call as they are ready, `waitForItems` to
/// wait until the server has confirmed them (by key) with the stream left open (Reverb's
/// `flush`), and `flush` to end the stream and learn how many items the server inserted.
///
/// Steps are grouped into chunks of up to `chunkLength` steps (a chunk also closes when an
/// item is created); items reference chunks, so overlapping items share data. A chunk is
/// sent once per stream, before the first item that uses it; chunks older than
/// `maxSequenceLength` steps are dropped after a send, and the server is told to release
/// them from the stream's cache.
///
/// Streaming use (many items in flight, no round trip per item): call `send()` every few
/// items (e.g. each 64), `waitForItems()` where the caller needs its items in the table,
/// `flush()` at the end (a writer left with an open stream keeps `ReplayClient.close()`
/// waiting until it is dropped). Calling only `flush()` sends everything in one stream.
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
    private var stream: InsertStream?
    private var sentChunks = Set<UInt64>()
    private var releasedChunks: [UInt64] = []
    /// Steps appended so far.
    public private(set) var stepCount = 0

    /// Messages `send` may queue before it waits for gRPC to take one (>= 1).
    public let maxQueuedMessages: Int

    /// A writer; throws `.invalidArgument` when `chunkLength` or `maxSequenceLength` is < 1.
    public init(client: ReplayClient, chunkLength: Int = 1, maxSequenceLength: Int = 64,
                maxQueuedMessages: Int = 8) throws(ReplayError) {
        guard chunkLength >= 1 else { throw ReplayError(.invalidArgument, "writer: chunkLength \(chunkLength) must be >= 1") }
        guard maxSequenceLength >= 1 else {
            throw ReplayError(.invalidArgument, "writer: maxSequenceLength \(maxSequenceLength) must be >= 1")
        }
        self.client = client
        self.chunkLength = chunkLength
        self.maxSequenceLength = maxSequenceLength
        self.maxQueuedMessages = Swift.max(1, maxQueuedMessages)
        // Random 32-bit prefix + counter: keys of concurrent writers do not collide in practice.
        nextKey = UInt64.random(in: 1...UInt64(UInt32.max)) << 32
    }

    /// A writer dropped with an open stream ends it (items sent so far are inserted; the
    /// count is not reported), so the client's `close()` does not wait for it.
    deinit { stream?.cancelSending() }

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

    /// Sends the pending items (and the chunks they use that this stream has not carried
    /// yet) as one message on the open Insert stream, opening one if needed; returns without
    /// waiting for the server (at most `maxQueuedMessages` messages wait in the client).
    /// Each insert may wait `timeout` for the rate limiter on the server (nil = forever).
    /// Throws when the stream already failed (the pending items are then dropped).
    public func send(timeout: Duration? = nil) async throws {
        guard !pendingItems.isEmpty else { return }
        let items = pendingItems
        pendingItems = []
        var request = Loom_Replay_InsertRequest()
        var needed = Set<UInt64>()
        for it in items { needed.formUnion(it.chunkKeys) }
        for (_, chunk) in chunks where needed.contains(chunk.key) && !sentChunks.contains(chunk.key) {
            var c = Loom_Replay_ChunkData()
            c.key = chunk.key
            c.columns = chunk.columns.map(Loom_Replay_TensorData.init)
            request.chunks.append(c)
            sentChunks.insert(chunk.key)
        }
        request.items = items
        request.releaseChunkKeys = releasedChunks
        releasedChunks = []
        request.timeoutMs = timeout.map(ReplayClient.milliseconds) ?? 0
        prune()
        let open = stream ?? client.openInsertStream(maxQueuedMessages: maxQueuedMessages)
        stream = open
        do {
            try await open.send(request)
        } catch {
            stream = nil
            sentChunks = []
            releasedChunks = []
            throw error
        }
    }

    /// Sends the pending items and waits until all but `leaving` of the items sent on the
    /// open stream are in their tables (the server confirms each by key); the stream stays
    /// open. Returns the keys confirmed on this stream so far, in insertion order. Throws the
    /// stream's error (the stream is then dropped and the next `send` opens a new one;
    /// exactly the items confirmed before the error are in their tables), or
    /// `deadlineExceeded` when `waitTimeout` passes first (the items stay
    /// in flight on the open stream). `timeout` bounds each insert's rate-limiter wait on the
    /// server, as in `send`.
    @discardableResult
    public func waitForItems(leaving: Int = 0, waitTimeout: Duration? = nil, timeout: Duration? = nil) async throws -> [UInt64] {
        try await send(timeout: timeout)
        guard let open = stream else { return [] }
        do {
            return try await open.waitForConfirmations(leaving: leaving, timeout: waitTimeout)
        } catch let error as RPCError where error.code == .deadlineExceeded && !open.hasEnded {
            throw error
        } catch {
            stream = nil
            sentChunks = []
            releasedChunks = []
            throw error
        }
    }

    /// Sends the pending items, ends the InsertStream call and returns how many items the
    /// server inserted (confirmed) on it: every item sent since the stream opened. On error
    /// the pending items are dropped (those confirmed before it are in).
    @discardableResult
    public func flush(timeout: Duration? = nil) async throws -> UInt64 {
        if stream == nil && pendingItems.isEmpty { return 0 }
        defer {
            stream = nil
            sentChunks = []
            releasedChunks = []
        }
        try await send(timeout: timeout)
        guard let open = stream else { return 0 }
        return try await open.finish()
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

    /// Drops chunks no future item can reach; those the stream carried are released on the
    /// server with the next message.
    private func prune() {
        let keepFrom = stepCount - maxSequenceLength
        var i = 0
        while i < chunks.count, chunks[i].start + chunks[i].chunk.length <= keepFrom {
            let key = chunks[i].chunk.key
            if sentChunks.remove(key) != nil { releasedChunks.append(key) }
            i += 1
        }
        if i > 0 { chunks.removeFirst(i) }
    }
}
