import XCTest
@testable import ReplayStorage

final class RateLimiterTests: XCTestCase {
    func limiter(_ c: RateLimiterConfig, inserts: Int, samples: Int, deletes: Int = 0) -> RateLimiter {
        RateLimiter(config: c, counters: RateLimiterCounters(inserts: inserts, samples: samples, deletes: deletes))
    }

    func testMinSizeBlocksSamplesUntilTheTableHoldsMinSizeItems() throws {
        let c = try RateLimiterConfig.minSize(3)
        XCTAssertFalse(limiter(c, inserts: 2, samples: 0).canSample())
        XCTAssertTrue(limiter(c, inserts: 3, samples: 0).canSample())
        XCTAssertTrue(limiter(c, inserts: 3, samples: 1_000_000).canSample())
        XCTAssertFalse(limiter(c, inserts: 3, samples: 0, deletes: 1).canSample(), "deletes shrink the table below min size")
        XCTAssertTrue(limiter(c, inserts: 1_000_000, samples: 0).canInsert())
    }

    func testSampleToInsertRatioBoundaries() throws {
        // samplesPerInsert 2, minSize 3, buffer 2: minDiff = 6 - 2 = 4, maxDiff = 6 + 2 = 8.
        let c = try RateLimiterConfig.sampleToInsertRatio(samplesPerInsert: 2, minSizeToSample: 3, errorBuffer: 2)
        XCTAssertEqual(c.minDiff, 4)
        XCTAssertEqual(c.maxDiff, 8)
        // Filling phase: inserts are free while inserts + 1 - deletes <= minSize.
        XCTAssertTrue(limiter(c, inserts: 2, samples: 0).canInsert())
        XCTAssertFalse(limiter(c, inserts: 2, samples: 0).canSample())
        // Insert boundary: (inserts + 1) * 2 - samples <= 8.
        XCTAssertTrue(limiter(c, inserts: 3, samples: 0).canInsert())   // 8 <= 8
        XCTAssertFalse(limiter(c, inserts: 4, samples: 0).canInsert())  // 10 > 8
        XCTAssertTrue(limiter(c, inserts: 4, samples: 2).canInsert())   // 8 <= 8
        XCTAssertFalse(limiter(c, inserts: 4, samples: 1).canInsert())  // 9 > 8
        // Sample boundary: inserts * 2 - samples - 1 >= 4.
        XCTAssertTrue(limiter(c, inserts: 3, samples: 1).canSample())   // 4 >= 4
        XCTAssertFalse(limiter(c, inserts: 3, samples: 2).canSample())  // 3 < 4
        XCTAssertTrue(limiter(c, inserts: 4, samples: 3).canSample())   // 4 >= 4
        // Batch checks count every sample of the batch.
        XCTAssertTrue(limiter(c, inserts: 3, samples: 0).canSample(2))   // 4 >= 4
        XCTAssertFalse(limiter(c, inserts: 3, samples: 0).canSample(3))  // 3 < 4
    }

    func testErrorBufferValidityRule() throws {
        // The range must be at least 2 * max(1, samplesPerInsert) wide.
        XCTAssertNoThrow(try RateLimiterConfig.sampleToInsertRatio(samplesPerInsert: 4, minSizeToSample: 10, errorBuffer: 4))
        assertReplayError(.invalidArgument,
                          "sampleToInsertRatio: error buffer 3.5 spans 7.0, expected at least 2 * max(1, samplesPerInsert) = 8.0 (samplesPerInsert 4.0); a smaller buffer can block inserts and samples for ever") {
            try RateLimiterConfig.sampleToInsertRatio(samplesPerInsert: 4, minSizeToSample: 10, errorBuffer: 3.5)
        }
        XCTAssertNoThrow(try RateLimiterConfig.sampleToInsertRatio(samplesPerInsert: 0.25, minSizeToSample: 10, errorBuffer: 1))
        assertReplayError(.invalidArgument) {
            try RateLimiterConfig.sampleToInsertRatio(samplesPerInsert: 0.25, minSizeToSample: 10, errorBuffer: 0.9)
        }
        assertReplayError(.invalidArgument, "sampleToInsertRatio: minDiff 30.0 is above samplesPerInsert * minSizeToSample = 20.0; samples could never start") {
            try RateLimiterConfig.sampleToInsertRatio(samplesPerInsert: 2, minSizeToSample: 10, minDiff: 30, maxDiff: 40)
        }
        assertReplayError(.invalidArgument, "sampleToInsertRatio: samplesPerInsert 0.0 must be finite and > 0") {
            try RateLimiterConfig.sampleToInsertRatio(samplesPerInsert: 0, minSizeToSample: 10, errorBuffer: 5)
        }
    }

    func testInvalidParametersAreRefused() {
        assertReplayError(.invalidArgument, "rate limiter: minSizeToSample 0 must be >= 1") { try RateLimiterConfig.minSize(0) }
        assertReplayError(.invalidArgument, "queue: size 0 must be >= 1") { try RateLimiterConfig.queue(size: 0) }
        assertReplayError(.invalidArgument, "stack: size -2 must be >= 1") { try RateLimiterConfig.stack(size: -2) }
        assertReplayError(.invalidArgument, "rate limiter: minDiff 5.0 must be <= maxDiff 1.0") {
            try RateLimiterConfig(samplesPerInsert: 1, minSizeToSample: 1, minDiff: 5, maxDiff: 1)
        }
    }

    func testQueueLimiterAllowsAtMostSizeOutstandingItems() throws {
        let c = try RateLimiterConfig.queue(size: 2)
        // A queue deletes every sampled item: deletes == samples.
        XCTAssertTrue(limiter(c, inserts: 0, samples: 0).canInsert())
        XCTAssertFalse(limiter(c, inserts: 0, samples: 0).canSample())
        XCTAssertTrue(limiter(c, inserts: 1, samples: 0).canInsert())
        XCTAssertFalse(limiter(c, inserts: 2, samples: 0).canInsert())
        XCTAssertTrue(limiter(c, inserts: 2, samples: 1, deletes: 1).canInsert())
        XCTAssertTrue(limiter(c, inserts: 2, samples: 1, deletes: 1).canSample())
        XCTAssertFalse(limiter(c, inserts: 2, samples: 2, deletes: 2).canSample())
    }

    func testConfigJSONRoundTrip() throws {
        let c = try RateLimiterConfig.minSize(4)
        let back = try JSONDecoder().decode(RateLimiterConfig.self, from: JSONEncoder().encode(c))
        XCTAssertEqual(back, c)
    }
}
