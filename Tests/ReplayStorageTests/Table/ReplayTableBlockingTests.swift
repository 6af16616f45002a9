import Foundation
import XCTest
@testable import ReplayStorage

final class ReplayTableBlockingTests: XCTestCase {
    /// Waits until `condition` holds (polling), failing after 5 s.
    func waitUntil(_ what: String, _ condition: () -> Bool) {
        let start = Date()
        while !condition() {
            if Date().timeIntervalSince(start) > 5 { XCTFail("timed out waiting until \(what)"); return }
            usleep(1000)
        }
    }

    func testBlockedSamplerWakesWhenAnInsertArrives() throws {
        let t = makeTable(sampler: .fifo)
        let result = Locked<[UInt64]?>(nil)
        let done = runOnThread {
            result.value = try? t.sample(timeout: .seconds(10)).map(\.info.key)
        }
        waitUntil("the sampler blocks") { t.info().waitingSamples == 1 }
        XCTAssertNil(result.value)
        try t.insertBounded(simpleItem(42, table: "t"))
        XCTAssertEqual(done.wait(timeout: .now() + 5), DispatchTimeoutResult.success)
        XCTAssertEqual(result.value, [42])
        let stats = t.info().sampleStats
        XCTAssertEqual(stats.blockedCalls, 1)
        XCTAssertEqual(stats.timeouts, 0)
        XCTAssertGreaterThan(stats.blockedSeconds, 0)
    }

    func testSampleTimeoutReturnsTheTimeoutErrorWithinABound() throws {
        let t = makeTable(sampler: .fifo)
        let start = DispatchTime.now()
        assertReplayError(.timeout) { try t.sample(timeout: .milliseconds(100)) }
        let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) * 1e-9
        XCTAssertGreaterThanOrEqual(elapsed, 0.1)
        XCTAssertLessThan(elapsed, 1.5)
        XCTAssertEqual(t.counters, RateLimiterCounters())
        XCTAssertEqual(t.info().sampleStats.timeouts, 1)
        do {
            _ = try t.sample(timeout: .zero)
            XCTFail("expected a timeout")
        } catch {
            XCTAssertEqual(error.message,
                           "table 't': sample timed out after 0.0 seconds waiting for the rate limiter (size 0 of max 1000, inserts 0, samples 0, deletes 0, RateLimiter(samplesPerInsert: 1.0, minSizeToSample: 1, minDiff: -1.7976931348623157e+308, maxDiff: 1.7976931348623157e+308))")
        }
    }

    func testBlockedInsertProceedsWhenASampleFreesRoomAndIsNotLost() throws {
        let t = try ReplayTable(config: .queue(name: "q", maxSize: 2))
        try t.insertBounded(simpleItem(1, table: "q"))
        try t.insertBounded(simpleItem(2, table: "q"))
        assertReplayError(.timeout) { try t.insert(simpleItem(3, table: "q"), timeout: .milliseconds(20)) }
        XCTAssertEqual(t.keysInInsertionOrder(), [1, 2], "a timed-out insert leaves the table unchanged")

        let failure = Locked<ReplayError?>(nil)
        let done = runOnThread {
            do throws(ReplayError) { try t.insert(simpleItem(3, table: "q"), timeout: .seconds(10)) } catch { failure.value = error }
        }
        waitUntil("the insert blocks") { t.info().waitingInserts == 1 }
        XCTAssertEqual(t.size, 2)
        XCTAssertEqual(try t.sample(timeout: .zero).map(\.info.key), [1])
        XCTAssertEqual(done.wait(timeout: .now() + 5), DispatchTimeoutResult.success)
        XCTAssertNil(failure.value)
        XCTAssertEqual(try t.sample(count: 5, timeout: .zero).map(\.info.key), [2, 3])
        XCTAssertEqual(t.counters, RateLimiterCounters(inserts: 3, samples: 3, deletes: 3))
    }

    func testManyProducersAndConsumersLoseNothing() throws {
        let t = try ReplayTable(config: .queue(name: "q", maxSize: 4))
        let received = Locked<[UInt64]>([])
        var threads: [DispatchSemaphore] = []
        for p in 0..<3 {
            threads.append(runOnThread {
                for i in 0..<200 { try! t.insert(simpleItem(UInt64(p * 1000 + i), table: "q"), timeout: .seconds(10)) }
            })
        }
        for _ in 0..<2 {
            threads.append(runOnThread {
                for _ in 0..<300 {
                    let keys = try! t.sample(timeout: .seconds(10)).map(\.info.key)
                    received.mutex.withLock { $0.append(contentsOf: keys) }
                }
            })
        }
        for s in threads { XCTAssertEqual(s.wait(timeout: .now() + 20), DispatchTimeoutResult.success) }
        let keys = received.value
        // Every item delivered exactly once (queue: max times sampled 1).
        XCTAssertEqual(keys.count, 600)
        XCTAssertEqual(Set(keys), Set((0..<3).flatMap { p in (0..<200).map { UInt64(p * 1000 + $0) } }))
        XCTAssertEqual(t.size, 0)
        XCTAssertEqual(t.counters, RateLimiterCounters(inserts: 600, samples: 600, deletes: 600))
    }

    func testDeleteWakesABlockedInsertOfAFillingTable() throws {
        // minSize 3: inserts are free while inserts - deletes + 1 <= 3; beyond that the
        // ratio rule (maxDiff) blocks them until a delete shrinks the table.
        let rl = try RateLimiterConfig(samplesPerInsert: 1, minSizeToSample: 3, minDiff: 0, maxDiff: 3)
        let t = try ReplayTable(config: TableConfig(name: "t", sampler: .fifo, remover: .fifo, maxSize: 10, rateLimiter: rl))
        for k: UInt64 in 1...3 { try t.insertBounded(simpleItem(k, table: "t")) }
        let done = runOnThread { try! t.insert(simpleItem(4, table: "t"), timeout: .seconds(10)) }
        waitUntil("the insert blocks") { t.info().waitingInserts == 1 }
        try t.mutatePriorities(deletes: [1])
        XCTAssertEqual(done.wait(timeout: .now() + 5), DispatchTimeoutResult.success)
        XCTAssertEqual(t.keysInInsertionOrder(), [2, 3, 4])
    }

    func testCloseWakesBlockedCallsWithCancelled() throws {
        let t = makeTable(sampler: .fifo)
        let failure = Locked<ReplayError?>(nil)
        let done = runOnThread {
            do throws(ReplayError) { _ = try t.sample(timeout: .seconds(10)) } catch { failure.value = error }
        }
        waitUntil("the sampler blocks") { t.info().waitingSamples == 1 }
        t.close()
        XCTAssertEqual(done.wait(timeout: .now() + 5), DispatchTimeoutResult.success)
        XCTAssertEqual(failure.value, ReplayError(.cancelled, "table 't': sample cancelled: the table was closed"))
        assertReplayError(.cancelled, "table 't': insert of item 1 refused: the table is closed") { try t.insertBounded(simpleItem(1, table: "t")) }
    }
}
