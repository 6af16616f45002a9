import Foundation
import XCTest
@testable import ReplayStorage
import TensorCore

final class ReplayCheckpointTests: XCTestCase {
    var root = ""
    override func setUp() { root = makeTempDirectory() }
    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    let signature = [ColumnSpec(name: "obs", dtype: .float32, shape: [2]), ColumnSpec(name: "done", dtype: .bool, shape: [])]

    func configs(maxSize: Int = 100) throws -> [TableConfig] {
        [TableConfig(name: "prio", sampler: .prioritized(priorityExponent: 0.7), remover: .minHeap, maxSize: maxSize,
                     maxTimesSampled: 5, rateLimiter: try .sampleToInsertRatio(samplesPerInsert: 2, minSizeToSample: 2, errorBuffer: 50),
                     signature: signature, seed: 3),
         try .queue(name: "queue", maxSize: 10)]
    }

    func chunk(_ key: UInt64, base: Float) throws -> Chunk {
        try Chunk(key: key, columns: [Tensor((0..<8).map { base + Float($0) * 0.1 }, shape: [4, 2]),
                                      Tensor([false, false, true, false])])
    }

    /// A server with data: shared chunks, awkward priorities, samples taken.
    func populatedServer() throws -> ReplayServer {
        let server = try ReplayServer(tables: configs())
        let chunks = try (0..<6).map { try chunk(UInt64(1000 + $0), base: Float($0)) }
        let priorities: [Double] = [0.1, 1.0 / 3.0, 2.5e-7, 7, 0, 1e300, 3.14159, 0.3]
        for (i, p) in priorities.enumerated() {
            let c = [chunks[i % 6], chunks[(i + 1) % 6]]
            try server.insertBounded(ReplayItem(key: 0xFFFF_FFFF_0000_0000 + UInt64(i), table: "prio", priority: p,
                                         chunks: c, offset: i % 3, length: 3))
        }
        for i in 0..<4 { try server.insertBounded(ReplayItem(key: UInt64(i), table: "queue", priority: 1, chunks: [chunks[i]])) }
        _ = try server.sample(table: "prio", count: 7, timeout: .zero)
        _ = try server.sample(table: "queue", count: 1, timeout: .zero)
        try server.mutatePriorities(table: "prio", updates: [(key: 0xFFFF_FFFF_0000_0003, priority: 0.7)])
        return server
    }

    func assertSameState(_ a: ReplayTable, _ b: ReplayTable, file: StaticString = #filePath, line: UInt = #line) {
        let sa = a.state(), sb = b.state()
        XCTAssertEqual(sa.counters, sb.counters, file: file, line: line)
        XCTAssertEqual(sa.rng, sb.rng, file: file, line: line)
        XCTAssertEqual(sa.nextSequence, sb.nextSequence, file: file, line: line)
        XCTAssertEqual(sa.samplerOrder, sb.samplerOrder, file: file, line: line)
        XCTAssertEqual(sa.removerOrder, sb.removerOrder, file: file, line: line)
        XCTAssertEqual(sa.records.count, sb.records.count, file: file, line: line)
        for (x, y) in zip(sa.records, sb.records) {
            XCTAssertEqual(x.item.key, y.item.key, file: file, line: line)
            XCTAssertEqual(x.item.priority.bitPattern, y.item.priority.bitPattern, file: file, line: line)
            XCTAssertEqual(x.timesSampled, y.timesSampled, file: file, line: line)
            XCTAssertEqual(x.sequence, y.sequence, file: file, line: line)
            XCTAssertEqual(x.item.offset, y.item.offset, file: file, line: line)
            XCTAssertEqual(x.item.length, y.item.length, file: file, line: line)
            XCTAssertEqual(x.item.chunks.map(\.key), y.item.chunks.map(\.key), file: file, line: line)
            for (cx, cy) in zip(x.item.chunks, y.item.chunks) {
                for (tx, ty) in zip(cx.columns, cy.columns) {
                    XCTAssertEqual(tx.dtype, ty.dtype, file: file, line: line)
                    XCTAssertEqual(tx.shape, ty.shape, file: file, line: line)
                    XCTAssertEqual(tx.withRawBytes { Array($0) }, ty.withRawBytes { Array($0) }, file: file, line: line)
                }
            }
        }
    }

    func testRoundTripIsBitForBitAndSamplingContinuesIdentically() throws {
        let server = try populatedServer()
        let dir = try server.checkpoint(to: root)
        XCTAssertEqual(dir, root + "/checkpoint-0000000001")
        XCTAssert(FileManager.default.fileExists(atPath: dir + "/DONE"))
        let restored = try ReplayServer(tables: configs(), checkpointRoot: root)
        for name in ["prio", "queue"] { assertSameState(try server.table(name), try restored.table(name)) }

        // Shared chunks stay shared: items 0 and 1 both use chunk 1001.
        let records = try restored.table("prio").state().records
        XCTAssert(records[0].item.chunks[1] === records[1].item.chunks[0])
        XCTAssertEqual(try restored.table("prio").info().uniqueChunks, try server.table("prio").info().uniqueChunks)

        // The generator state is restored: the same calls give the same samples.
        for _ in 0..<3 {
            let a = try server.sample(table: "prio", count: 4, timeout: .zero).map(\.info)
            let b = try restored.sample(table: "prio", count: 4, timeout: .zero).map(\.info)
            XCTAssertEqual(a, b)
        }
        XCTAssertEqual(try restored.sample(table: "queue", count: 5, timeout: .zero).map(\.info.key), [1, 2, 3])
    }

    func testConflictingConfigIsRefusedNamingBothValues() throws {
        try populatedServer().checkpoint(to: root)
        assertReplayError(.configConflict,
                          "checkpoint \(root)/checkpoint-0000000001: table 'prio' conflicts with the server config (checkpoint vs server): max size 100 vs 200") {
            try ReplayServer(tables: configs(maxSize: 200), checkpointRoot: root)
        }
        assertReplayError(.configConflict,
                          "checkpoint \(root)/checkpoint-0000000001 holds table 'queue', which the server does not configure (server tables: prio)") {
            try ReplayServer(tables: [configs()[0]], checkpointRoot: root)
        }
        // The checkpoint's own configs restore it without a server config.
        let alone = try ReplayServer(restoringFrom: root + "/checkpoint-0000000001")
        XCTAssertEqual(alone.tableNames, ["prio", "queue"])
    }

    func testDirectoryWithoutDoneIsIgnoredAndRefused() throws {
        let server = try populatedServer()
        try server.checkpoint(to: root)
        let sizeAtCheckpoint = try server.table("prio").size
        XCTAssertGreaterThan(sizeAtCheckpoint, 0)
        try server.reset(table: "prio")
        let second = try server.checkpoint(to: root)
        try FileManager.default.removeItem(atPath: second + "/DONE")   // as if the write had been interrupted
        XCTAssertEqual(ReplayCheckpoint.latest(in: root), root + "/checkpoint-0000000001")
        let restored = try ReplayServer(tables: configs(), checkpointRoot: root)
        XCTAssertEqual(try restored.table("prio").size, sizeAtCheckpoint, "restored from the complete checkpoint, not the reset one")
        assertReplayError(.checkpoint,
                          "checkpoint \(second): no DONE marker (an incomplete or interrupted write); refusing to load it") {
            try ReplayServer(restoringFrom: second)
        }
    }

    func testFailedWriteLeavesThePreviousCheckpointIntact() throws {
        let server = try populatedServer()
        try server.checkpoint(to: root)
        let sizeAtCheckpoint = try server.table("prio").size
        XCTAssertGreaterThan(sizeAtCheckpoint, 0)
        let before = try FileManager.default.contentsOfDirectory(atPath: root).sorted()
        try server.reset(table: "prio")
        for failAfter in 1...4 {
            assertReplayError(.checkpoint) {
                try ReplayCheckpoint.write(server.tableNames.map { try! server.table($0).state() }, root: root, failAfterFiles: failAfter)
            }
            XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: root).sorted(), before, "no partial directory is left")
        }
        let restored = try ReplayServer(tables: configs(), checkpointRoot: root)
        XCTAssertEqual(try restored.table("prio").size, sizeAtCheckpoint)
    }

    func testMissingOrDamagedFilesAreClearErrors() throws {
        let server = try populatedServer()
        let dir = try server.checkpoint(to: root)
        let n = try server.table("prio").size
        let items = dir + "/items.safetensors"
        let good = try XCTUnwrap(FileManager.default.contents(atPath: items))
        try FileManager.default.removeItem(atPath: items)
        assertReplayError(.checkpoint, "checkpoint: \(items): file not found") { try ReplayServer(restoringFrom: dir) }
        // The same file with one item column dropped.
        var tensors = try SafeTensors.decode(good).tensors
        tensors["0.length"] = nil
        try SafeTensors.save(tensors, to: items)
        assertReplayError(.checkpoint, "checkpoint \(dir): items.safetensors has no tensor '0.length'") { try ReplayServer(restoringFrom: dir) }
        tensors["0.length"] = Tensor([Int32(1)])
        try SafeTensors.save(tensors, to: items)
        assertReplayError(.checkpoint, "checkpoint \(dir): tensor '0.length' is int32 [1], expected int64 [\(n)]") { try ReplayServer(restoringFrom: dir) }
    }

    func testEmptyRootStartsEmptyAndMissingDirectoryIsNotFound() throws {
        let s = try ReplayServer(tables: configs(), checkpointRoot: root)
        XCTAssertEqual(s.info().map(\.size), [0, 0])
        assertReplayError(.notFound, "checkpoint \(root)/nope: directory not found") { try ReplayServer(restoringFrom: root + "/nope") }
    }

    func testPeriodicCheckpoints() throws {
        let server = try populatedServer()
        server.startPeriodicCheckpoints(root: root, every: .milliseconds(30))
        let start = Date()
        while server.periodicCheckpointStatus.written < 2 && Date().timeIntervalSince(start) < 10 { usleep(5000) }
        server.stopPeriodicCheckpoints()
        XCTAssertGreaterThanOrEqual(ReplayCheckpoint.checkpointNumbers(in: root).count, 2)
        let latest = try XCTUnwrap(ReplayCheckpoint.latest(in: root))
        let restored = try ReplayServer(tables: configs(), restoringFrom: latest)
        assertSameState(try server.table("prio"), try restored.table("prio"))
    }
}
