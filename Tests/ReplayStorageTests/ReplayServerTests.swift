import Foundation
import XCTest
@testable import ReplayStorage

final class ReplayServerTests: XCTestCase {
    func server() throws -> ReplayServer {
        try ReplayServer(tables: [
            TableConfig(name: "uniform", sampler: .uniform, remover: .fifo, maxSize: 10, rateLimiter: .minSize(2)),
            .queue(name: "queue", maxSize: 3),
        ])
    }

    func testRoutesByTableNameAndReportsInfo() throws {
        let s = try server()
        try s.insertBounded(simpleItem(1, table: "uniform"))
        try s.insertBounded(simpleItem(2, table: "uniform"))
        try s.insertBounded(simpleItem(3, table: "queue"))
        XCTAssertEqual(s.tableNames, ["uniform", "queue"])
        let samples = try s.sample(table: "uniform", count: 4, timeout: .zero)
        XCTAssertEqual(samples.count, 4)
        XCTAssert(samples.allSatisfy { [1, 2].contains($0.info.key) && $0.info.probability == 0.5 && $0.info.tableSize == 2 })
        let info = s.info()
        XCTAssertEqual(info.map(\.config.name), ["uniform", "queue"])
        XCTAssertEqual(info.map(\.size), [2, 1])
        XCTAssertEqual(info[0].counters, RateLimiterCounters(inserts: 2, samples: 4, deletes: 0))
        try s.reset(table: "uniform")
        XCTAssertEqual(s.info()[0].size, 0)
        XCTAssertEqual(s.info()[0].counters, RateLimiterCounters())
    }

    func testUnknownTableAndDuplicateNames() throws {
        let s = try server()
        let expected = "unknown table 'nope' (tables: uniform, queue)"
        assertReplayError(.notFound, expected) { try s.insertBounded(simpleItem(1, table: "nope")) }
        assertReplayError(.notFound, expected) { try s.sample(table: "nope") }
        assertReplayError(.notFound, expected) { try s.mutatePriorities(table: "nope", deletes: [1]) }
        assertReplayError(.notFound, expected) { try s.reset(table: "nope") }
        assertReplayError(.invalidArgument, "two tables are named 'queue'") {
            try ReplayServer(tables: [.queue(name: "queue", maxSize: 1), .queue(name: "queue", maxSize: 2)])
        }
    }

    func testCloseCancelsBlockedSamples() throws {
        let s = try server()
        let err = Locked<ReplayError.Kind?>(nil)
        let done = runOnThread {
            do throws(ReplayError) { _ = try s.sample(table: "queue", timeout: .seconds(10)) } catch { err.value = error.kind }
        }
        while try s.table("queue").info().waitingSamples == 0 { usleep(1000) }
        s.close()
        XCTAssertEqual(done.wait(timeout: .now() + 5), DispatchTimeoutResult.success)
        XCTAssertEqual(err.value, .cancelled)
    }
}
