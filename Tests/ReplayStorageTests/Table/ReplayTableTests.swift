import XCTest
@testable import ReplayStorage
import TensorCore

final class ReplayTableTests: XCTestCase {
    func testQueueSamplesInInsertionOrderAndRemovesEachItem() throws {
        let t = try ReplayTable(config: .queue(name: "q", maxSize: 5))
        for k: UInt64 in [7, 3, 9] { try t.insert(simpleItem(k, table: "q"), timeout: .zero) }
        var got: [UInt64] = []
        for expectedSize in [3, 2, 1] {
            let s = try t.sample(timeout: .zero)
            XCTAssertEqual(s.count, 1)
            XCTAssertEqual(s[0].info.tableSize, expectedSize)
            XCTAssertEqual(s[0].info.timesSampled, 1)
            got.append(s[0].info.key)
        }
        XCTAssertEqual(got, [7, 3, 9])
        XCTAssertEqual(t.size, 0)
        XCTAssertEqual(t.counters, RateLimiterCounters(inserts: 3, samples: 3, deletes: 3))
        assertReplayError(.timeout) { try t.sample(timeout: .zero) }
    }

    func testStackSamplesNewestFirst() throws {
        let t = try ReplayTable(config: .stack(name: "s", maxSize: 5))
        for k: UInt64 in 1...4 { try t.insertBounded(simpleItem(k, table: "s")) }
        let batch = try t.sample(count: 10, timeout: .zero)
        XCTAssertEqual(batch.map(\.info.key), [4, 3, 2, 1], "a flexible batch takes what the limiter allows")
        XCTAssertEqual(t.size, 0)
    }

    func testItemIsRemovedAfterMaxTimesSampled() throws {
        let t = makeTable(sampler: .uniform, maxTimesSampled: 3)
        try t.insertBounded(simpleItem(1, table: "t", priority: 2.5))
        let samples = try t.sample(count: 5, timeout: .zero)
        XCTAssertEqual(samples.map(\.info.timesSampled), [1, 2, 3])
        XCTAssertEqual(samples.map(\.info.tableSize), [1, 1, 1])
        XCTAssertEqual(samples[2].info, SampleInfo(key: 1, probability: 1, tableSize: 1, priority: 2.5, timesSampled: 3))
        XCTAssertFalse(t.contains(1))
        XCTAssertEqual(t.counters.deletes, 1)
    }

    func testRemoverEvictsAtMaxSize() throws {
        let fifo = makeTable(sampler: .uniform, remover: .fifo, maxSize: 3)
        for k: UInt64 in 1...5 { try fifo.insertBounded(simpleItem(k, table: "t")) }
        XCTAssertEqual(fifo.keysInInsertionOrder(), [3, 4, 5])
        XCTAssertEqual(fifo.counters, RateLimiterCounters(inserts: 5, samples: 0, deletes: 2))

        let minHeap = makeTable(sampler: .uniform, remover: .minHeap, maxSize: 3)
        for (k, p) in [(1, 5.0), (2, 1.0), (3, 9.0), (4, 2.0), (5, 0.5)] {
            try minHeap.insertBounded(simpleItem(UInt64(k), table: "t", priority: p))
        }
        // 4 evicts 2 (priority 1); 5 evicts 4 (priority 2).
        XCTAssertEqual(minHeap.keysInInsertionOrder(), [1, 3, 5])
    }

    func testPrioritizedSampleInfoAndImmediatePriorityUpdates() throws {
        let t = makeTable(sampler: .prioritized(priorityExponent: 1))
        for (k, p) in [(1, 1.0), (2, 3.0)] { try t.insertBounded(simpleItem(UInt64(k), table: "t", priority: p)) }
        let s = try t.sample(count: 200, timeout: .zero)
        XCTAssertEqual(s.count, 200)
        for x in s {
            XCTAssertEqual(x.info.probability, x.info.key == 1 ? 0.25 : 0.75)
            XCTAssertEqual(x.info.tableSize, 2)
        }
        try t.mutatePriorities(updates: [(key: 2, priority: 0), (key: 99, priority: 4)])
        XCTAssertEqual(t.priority(of: 2), 0)
        XCTAssertFalse(t.contains(99), "updates of unknown keys are ignored")
        let after = try t.sample(count: 50, timeout: .zero)
        XCTAssert(after.allSatisfy { $0.info.key == 1 && $0.info.probability == 1 })
        try t.mutatePriorities(deletes: [1])
        XCTAssertEqual(t.keysInInsertionOrder(), [2])
        XCTAssertEqual(t.counters.deletes, 1)
    }

    func testBadPrioritiesLeaveTheTableUnchanged() throws {
        let t = makeTable(sampler: .prioritized(priorityExponent: 1))
        try t.insertBounded(simpleItem(1, table: "t", priority: 2))
        assertReplayError(.invalidArgument, "item 2 for table 't': priority nan must be finite and >= 0") {
            try t.insertBounded(simpleItem(2, table: "t", priority: .nan))
        }
        assertReplayError(.invalidArgument, "item 3 for table 't': priority -1.0 must be finite and >= 0") {
            try t.insertBounded(simpleItem(3, table: "t", priority: -1))
        }
        assertReplayError(.invalidArgument, "table 't': priority -0.5 for item 1 must be finite and >= 0") {
            try t.mutatePriorities(updates: [(key: 1, priority: 7), (key: 1, priority: -0.5)], deletes: [1])
        }
        XCTAssertEqual(t.priority(of: 1), 2, "a rejected mutation applies none of its updates")
        XCTAssertEqual(t.keysInInsertionOrder(), [1])
        XCTAssertEqual(t.counters, RateLimiterCounters(inserts: 1, samples: 0, deletes: 0))
    }

    func testDuplicateKeysWrongTableAndBadRangesAreRefused() throws {
        let t = makeTable(sampler: .fifo)
        try t.insertBounded(simpleItem(1, table: "t"))
        assertReplayError(.alreadyExists, "table 't': item key 1 is already in the table") { try t.insertBounded(simpleItem(1, table: "t")) }
        assertReplayError(.invalidArgument, "item 2 names table 'other', inserted into table 't'") {
            try t.insertBounded(simpleItem(2, table: "other"))
        }
        let c = floatChunk(5, steps: 3)
        assertReplayError(.invalidArgument,
                          "item 3 for table 't': steps 2..<6 do not fit its chunks (3 steps, first chunk 3); expected offset in 0..<3 and length >= 1") {
            try t.insertBounded(ReplayItem(key: 3, table: "t", priority: 1, chunks: [c], offset: 2, length: 4))
        }
        assertReplayError(.invalidArgument, "table 't': sample count 0 must be >= 1") { try t.sample(count: 0) }
        XCTAssertEqual(t.size, 1)
    }

    func testInvalidTableConfigsAreRefused() {
        let rl = try! RateLimiterConfig.minSize(1)
        assertReplayError(.invalidArgument, "table 'a': maxSize 0 must be >= 1") {
            try ReplayTable(config: TableConfig(name: "a", sampler: .fifo, remover: .fifo, maxSize: 0, rateLimiter: rl))
        }
        assertReplayError(.invalidArgument, "table 'a': maxTimesSampled -1 must be >= 0 (0 = unlimited)") {
            try ReplayTable(config: TableConfig(name: "a", sampler: .fifo, remover: .fifo, maxSize: 3, maxTimesSampled: -1, rateLimiter: rl))
        }
        assertReplayError(.invalidArgument, "table 'a': prioritized selector: priority exponent -1.0 must be finite and >= 0") {
            try ReplayTable(config: TableConfig(name: "a", sampler: .prioritized(priorityExponent: -1), remover: .fifo, maxSize: 3, rateLimiter: rl))
        }
        assertReplayError(.invalidArgument, "queue: size 0 must be >= 1") { try TableConfig.queue(name: "q", maxSize: 0) }
    }

    func testOverlappingItemsShareChunkStorage() throws {
        let t = makeTable(sampler: .fifo, maxTimesSampled: 0)
        weak var weakFirst: Chunk?
        do {
            let c1 = floatChunk(1, steps: 4, width: 2, base: 0)    // steps 0...3: values 0..7
            let c2 = floatChunk(2, steps: 4, width: 2, base: 8)    // steps 4...7: values 8..15
            weakFirst = c1
            try t.insertBounded(ReplayItem(key: 10, table: "t", priority: 1, chunks: [c1], offset: 1, length: 3))
            try t.insertBounded(ReplayItem(key: 11, table: "t", priority: 1, chunks: [c1, c2], offset: 2, length: 4))
        }
        XCTAssertNotNil(weakFirst, "the table keeps the chunk alive")
        let info = t.info()
        XCTAssertEqual(info.uniqueChunks, 2)
        XCTAssertEqual(info.chunkBytes, 2 * 4 * 2 * 4)

        let a = try t.sample(timeout: .zero)[0].item
        try t.mutatePriorities(deletes: [10])
        let b = try t.sample(timeout: .zero)[0].item
        XCTAssert(a.chunks[0] === b.chunks[0], "both items reference one chunk object")
        XCTAssert(a.chunks[0].columns[0].storageBlock === b.chunks[0].columns[0].storageBlock)
        XCTAssertEqual(a.column(0).shape, [3, 2])
        XCTAssertEqual(a.column(0).scalars(as: Float.self), [2, 3, 4, 5, 6, 7])
        XCTAssert(a.column(0).storageBlock === a.chunks[0].columns[0].storageBlock, "a one-chunk trajectory is a view")
        XCTAssertEqual(b.column(0).shape, [4, 2])
        XCTAssertEqual(b.column(0).scalars(as: Float.self), [4, 5, 6, 7, 8, 9, 10, 11])

        t.reset()
        _ = (a, b)
        XCTAssertEqual(t.size, 0)
        XCTAssertEqual(t.counters, RateLimiterCounters())
    }

    /// `ReplayItem.column`: a trajectory that is exactly one chunk is that chunk's column
    /// (same storage and shape); one starting in a later chunk, or spanning two, has the
    /// right rows.
    func testItemColumnWholeChunkAndLaterChunk() throws {
        let c1 = floatChunk(1, steps: 4, width: 2, base: 0)    // values 0..7
        let c2 = floatChunk(2, steps: 4, width: 2, base: 8)    // values 8..15
        let whole = ReplayItem(key: 1, table: "t", priority: 1, chunks: [c1])
        XCTAssertEqual(whole.column(0).shape, [4, 2])
        XCTAssert(whole.column(0).storageBlock === c1.columns[0].storageBlock)
        XCTAssertEqual(whole.column(0).scalars(as: Float.self), (0..<8).map(Float.init))
        let later = ReplayItem(key: 2, table: "t", priority: 1, chunks: [c1, c2], offset: 5, length: 2)
        XCTAssertEqual(later.column(0).shape, [2, 2])
        XCTAssertEqual(later.column(0).scalars(as: Float.self), [10, 11, 12, 13])
        let spanning = ReplayItem(key: 3, table: "t", priority: 1, chunks: [c1, c2], offset: 3, length: 2)
        XCTAssertEqual(spanning.column(0).scalars(as: Float.self), [6, 7, 8, 9])
        let tail = ReplayItem(key: 4, table: "t", priority: 1, chunks: [c1], offset: 2, length: 2)
        XCTAssertEqual(tail.column(0).scalars(as: Float.self), [4, 5, 6, 7])
    }

    func testChunkIsFreedWhenTheLastItemGoes() throws {
        let t = makeTable(sampler: .fifo)
        weak var weakChunk: Chunk?
        do {
            let c = floatChunk(1, steps: 2)
            weakChunk = c
            try t.insertBounded(ReplayItem(key: 1, table: "t", priority: 1, chunks: [c], offset: 0, length: 1))
            try t.insertBounded(ReplayItem(key: 2, table: "t", priority: 1, chunks: [c], offset: 1, length: 1))
        }
        try t.mutatePriorities(deletes: [1])
        XCTAssertNotNil(weakChunk, "item 2 still uses the chunk")
        try t.mutatePriorities(deletes: [2])
        XCTAssertNil(weakChunk, "no item uses the chunk any more")
    }

    func testSameSeedSameSamples() throws {
        func run() throws -> [UInt64] {
            let t = makeTable(sampler: .prioritized(priorityExponent: 0.8), seed: 1234)
            for k: UInt64 in 0..<50 { try t.insertBounded(simpleItem(k, table: "t", priority: Double(k % 5) + 0.1)) }
            return try t.sample(count: 100, timeout: .zero).map(\.info.key)
        }
        XCTAssertEqual(try run(), try run())
    }

    func testChunkValidation() throws {
        let a = try Tensor([Float](repeating: 0, count: 6), shape: [3, 2])
        assertReplayError(.invalidArgument, "chunk 4: column 1 has shape [2], expected 3 steps like column 0 (shape [3, 2])") {
            try Chunk(key: 4, columns: [a, Tensor([Int32(1), 2])])
        }
        assertReplayError(.invalidArgument, "chunk 4: expected at least one column, found none") { try Chunk(key: 4, columns: []) }
        assertReplayError(.invalidArgument, "chunk 4: column 0 has shape [], expected [steps, ...]") {
            try Chunk(key: 4, columns: [Tensor(scalar: Float(1))])
        }
    }
}
