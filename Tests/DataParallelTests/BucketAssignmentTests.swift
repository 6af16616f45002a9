import XCTest
@testable import DataParallel

final class BucketAssignmentTests: XCTestCase {
    func lists(_ a: BucketAssignment) -> [[Int]] { a.buckets.map(\.parameters) }

    func testZeroParameters() throws {
        let a = try BucketAssignment(parameterBytes: [])
        XCTAssertEqual(a.buckets.count, 0)
        XCTAssertNoThrow(try a.validate())
        XCTAssertEqual(a.description, "buckets 0 params 0 cap 26214400 first 1048576")
        XCTAssertEqual(try BucketAssignment(parsing: a.description, parameterBytes: []), a)
    }

    func testReverseOrderAndFirstBucketCap() throws {
        // Sizes 100, 200, 300, 400 (registration order); first cap 500, cap 600.
        let a = try BucketAssignment(parameterBytes: [100, 200, 300, 400], capBytes: 600, firstBucketCapBytes: 500)
        // Reverse: 3 (400) fits first bucket; 2 (300) would make 700 > 500 -> new bucket;
        // 1 (200) -> 500 <= 600; 0 (100) -> 600 <= 600 (exact boundary fits).
        XCTAssertEqual(lists(a), [[3], [2, 1, 0]])
        XCTAssertEqual(a.buckets[1].offsets, [0, 300, 500])
        XCTAssertEqual(a.buckets.map(\.byteCount), [400, 600])
        XCTAssertEqual(a.location.map(\.bucket), [1, 1, 1, 0])
        XCTAssertEqual(a.location.map(\.slot), [2, 1, 0, 0])
    }

    func testExactCapBoundaries() throws {
        // Exactly cap: stays together; one byte more: splits.
        XCTAssertEqual(lists(try BucketAssignment(parameterBytes: [4, 4], capBytes: 8, firstBucketCapBytes: 8)), [[1, 0]])
        XCTAssertEqual(lists(try BucketAssignment(parameterBytes: [5, 4], capBytes: 8, firstBucketCapBytes: 8)), [[1], [0]])
        XCTAssertEqual(lists(try BucketAssignment(parameterBytes: [4, 4, 4, 4, 4], capBytes: 8, firstBucketCapBytes: 4)),
                       [[4], [3, 2], [1, 0]])
    }

    func testHugeParameterGetsOwnBucket() throws {
        let a = try BucketAssignment(parameterBytes: [10, 1000, 10, 10], capBytes: 100, firstBucketCapBytes: 50)
        XCTAssertEqual(lists(a), [[3, 2], [1], [0]])
        XCTAssertEqual(a.buckets[1].byteCount, 1000)
        // A single parameter larger than the first cap.
        XCTAssertEqual(lists(try BucketAssignment(parameterBytes: [1000], capBytes: 100, firstBucketCapBytes: 50)), [[0]])
    }

    func testZeroSizedParametersJoinCurrentBucket() throws {
        let a = try BucketAssignment(parameterBytes: [0, 8, 0], capBytes: 8, firstBucketCapBytes: 8)
        XCTAssertEqual(lists(a), [[2, 1, 0]])
        XCTAssertEqual(a.buckets[0].offsets, [0, 0, 8])
    }

    func testDefaultsMatchPyTorch() throws {
        let mib = 1024 * 1024
        // 30 parameters of 1 MiB: first bucket 1 MiB, then 25 MiB, then the rest.
        let a = try BucketAssignment(parameterBytes: Array(repeating: mib, count: 30))
        XCTAssertEqual(a.buckets.map(\.byteCount), [mib, 25 * mib, 4 * mib])
        XCTAssertEqual(a.buckets[0].parameters, [29])
    }

    func testTextRoundTrip() throws {
        let sizes = [12, 40, 8, 8, 100, 4]
        let a = try BucketAssignment(parameterBytes: sizes, capBytes: 64, firstBucketCapBytes: 16)
        XCTAssertEqual(a.description, """
            buckets 4 params 6 cap 64 first 16
            bucket 0 bytes 4 params 5
            bucket 1 bytes 100 params 4
            bucket 2 bytes 56 params 3 2 1
            bucket 3 bytes 12 params 0
            """)
        XCTAssertEqual(try BucketAssignment(parsing: a.description, parameterBytes: sizes), a)
    }

    func testValidationErrorsNameTheProblem() {
        func message(_ body: () throws -> Void) -> String {
            do { try body(); return "no error" } catch { return "\(error)" }
        }
        XCTAssertEqual(message { _ = try BucketAssignment(parameterBytes: [4], capBytes: 0) },
                       "bucket assignment: capBytes 0 must be > 0")
        XCTAssertEqual(message { _ = try BucketAssignment(parameterBytes: [4, -1]) },
                       "bucket assignment: parameter 1 has -1 bytes; expected >= 0")
        XCTAssertEqual(message { _ = try BucketAssignment(parameterBytes: [4, 4], buckets: [[0, 1], [1]]) },
                       "bucket assignment: parameter 1 is in bucket 0 and bucket 1; expected exactly one")
        XCTAssertEqual(message { _ = try BucketAssignment(parameterBytes: [4, 4], buckets: [[0]]) },
                       "bucket assignment: parameter 1 is in no bucket; expected exactly one")
        XCTAssertEqual(message { _ = try BucketAssignment(parameterBytes: [4], buckets: [[0], []]) },
                       "bucket assignment: bucket 1 is empty")
        XCTAssertEqual(message { _ = try BucketAssignment(parameterBytes: [4], buckets: [[3]]) },
                       "bucket assignment: bucket 0 names parameter 3; expected 0..<1")
        XCTAssertEqual(message { _ = try BucketAssignment(parsing: "buckets 1 params 1 cap 8 first 8\nbucket 0 bytes 5 params 0", parameterBytes: [4]) },
                       "bucket assignment text: bucket 0 says 5 bytes; its parameters sum to 4")
        XCTAssertEqual(message { _ = try BucketAssignment(parsing: "buckets 2 params 1 cap 8 first 8\nbucket 0 bytes 4 params 0", parameterBytes: [4]) },
                       "bucket assignment text: 1 bucket lines; the header says 2")
        XCTAssertEqual(message { _ = try BucketAssignment(parsing: "hello", parameterBytes: [4]) },
                       "bucket assignment text, line 1: expected 'buckets N params P cap BYTES first BYTES', found 'hello'")
    }

    /// Every generated assignment over a sweep of sizes and caps validates, keeps the
    /// reverse order, and respects the caps unless a bucket holds a single oversize parameter.
    func testSweepInvariants() throws {
        var rng = SystemRandomNumberGenerator()
        for n in [0, 1, 2, 3, 5, 17] {
            for cap in [1, 7, 64] {
                for first in [1, 5, 64] {
                    let sizes = (0..<n).map { _ in Int.random(in: 0...80, using: &rng) }
                    let a = try BucketAssignment(parameterBytes: sizes, capBytes: cap, firstBucketCapBytes: first)
                    try a.validate()
                    XCTAssertEqual(a.buckets.flatMap(\.parameters), Array((0..<n).reversed()), "sizes \(sizes)")
                    for (b, bucket) in a.buckets.enumerated() where bucket.parameters.count > 1 {
                        XCTAssertLessThanOrEqual(bucket.byteCount, b == 0 ? first : cap, "sizes \(sizes) cap \(cap) first \(first)")
                    }
                }
            }
        }
    }
}
