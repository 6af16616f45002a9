import XCTest
@testable import ReplayStorage

final class ReplayRandomTests: XCTestCase {
    func testRandomIsSeededAndUnbiasedInRange() {
        var a = ReplayRandom(seed: 42), b = ReplayRandom(seed: 42), c = ReplayRandom(seed: 43)
        let xa = (0..<8).map { _ in a.next() }
        XCTAssertEqual(xa, (0..<8).map { _ in b.next() })
        XCTAssertNotEqual(xa, (0..<8).map { _ in c.next() })
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { counts[a.nextInt(below: 7)] += 1 }
        // 6 degrees of freedom: P(chi2 > 22.46) = 0.001.
        XCTAssertLessThan(chiSquare(observed: counts, expected: [Double](repeating: 1.0 / 7, count: 7)), 22.46)
        for _ in 0..<1000 { let d = a.nextDouble(); XCTAssert(d >= 0 && d < 1) }
    }
}
