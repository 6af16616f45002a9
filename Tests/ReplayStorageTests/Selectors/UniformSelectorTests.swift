import XCTest
@testable import ReplayStorage

final class UniformSelectorTests: XCTestCase {
    func testHoldsExactlyTheModelKeysAfterRandomOperations() {
        let s = UniformSelector()
        var rng = ReplayRandom(seed: 3)
        randomOperations(s, seed: 13, steps: 2000) { model in
            XCTAssertEqual(Set(s.orderedKeys()), Set(model.keys))
            if !model.items.isEmpty {
                let picked = s.sample(&rng)
                XCTAssert(model.keys.contains(picked.key))
                XCTAssertEqual(picked.probability, 1 / Double(model.items.count))
            }
        }
    }

    func testFrequenciesAreUniform() {
        let s = UniformSelector()
        let keys: [UInt64] = [10, 20, 30, 40, 50, 60]
        for k in keys { s.insert(key: k, priority: Double(k)) }  // priorities are ignored
        s.delete(key: 30)
        let live: [UInt64] = [10, 20, 40, 50, 60]
        var counts = [Int](repeating: 0, count: live.count)
        var rng = ReplayRandom(seed: 99)
        for _ in 0..<50_000 { counts[live.firstIndex(of: s.sample(&rng).key)!] += 1 }
        // 4 degrees of freedom: P(chi2 > 18.47) = 0.001.
        XCTAssertLessThan(chiSquare(observed: counts, expected: [Double](repeating: 0.2, count: 5)), 18.47)
    }
}
