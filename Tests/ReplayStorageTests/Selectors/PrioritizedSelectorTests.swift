import Foundation
import XCTest
@testable import ReplayStorage

final class PrioritizedSelectorTests: XCTestCase {
    func testSumTreeInvariantsAndWeightsAfterRandomOperations() {
        for exponent in [1.0, 0.6, 0.0] {
            let s = PrioritizedSelector(priorityExponent: exponent)
            var rng = ReplayRandom(seed: 5)
            randomOperations(s, seed: 14, steps: 1500) { model in
                XCTAssertNil(s.invariantViolation())
                var naiveTotal = 0.0
                for it in model.items {
                    XCTAssertEqual(s.leafWeight(it.key), pow(it.priority, exponent))
                    naiveTotal += pow(it.priority, exponent)
                }
                XCTAssertEqual(s.totalWeight, naiveTotal, accuracy: 1e-9 * max(1, naiveTotal))
                if !model.items.isEmpty {
                    let picked = s.sample(&rng)
                    let w = pow(model.items.first { $0.key == picked.key }!.priority, exponent)
                    XCTAssertGreaterThan(w, 0, "sampled a zero-weight key")
                    XCTAssertEqual(picked.probability, w / s.totalWeight, accuracy: 1e-12)
                }
            }
        }
    }

    func testFrequenciesFollowPriorityToTheExponent() {
        let priorities: [Double] = [1, 2, 3, 0.5, 8, 0]
        for exponent in [1.0, 0.5, 2.0] {
            let s = PrioritizedSelector(priorityExponent: exponent)
            for (i, p) in priorities.enumerated() { s.insert(key: UInt64(i), priority: p) }
            let weights = priorities.map { pow($0, exponent) }
            let total = weights.reduce(0, +)
            var counts = [Int](repeating: 0, count: priorities.count)
            var rng = ReplayRandom(seed: 2024)
            for _ in 0..<60_000 {
                let picked = s.sample(&rng)
                counts[Int(picked.key)] += 1
                XCTAssertEqual(picked.probability, weights[Int(picked.key)] / total, accuracy: 1e-12)
            }
            XCTAssertEqual(counts[5], 0, "priority 0 must never be sampled")
            // 4 degrees of freedom (the zero-probability key adds none): P(chi2 > 18.47) = 0.001.
            XCTAssertLessThan(chiSquare(observed: counts, expected: weights.map { $0 / total }), 18.47, "exponent \(exponent)")
        }
    }

    func testUpdateAndDeleteChangeTheDistributionAtOnce() {
        let s = PrioritizedSelector(priorityExponent: 1)
        for k: UInt64 in 0..<4 { s.insert(key: k, priority: 1) }
        s.update(key: 2, priority: 0)
        s.delete(key: 0)
        var rng = ReplayRandom(seed: 8)
        var seen = Set<UInt64>()
        for _ in 0..<2000 { seen.insert(s.sample(&rng).key) }
        XCTAssertEqual(seen, [1, 3])
        XCTAssertEqual(s.probability(of: 1), 0.5)
        XCTAssertNil(s.probability(of: 0))
    }

    func testAllZeroWeightsSampleUniformly() {
        let s = PrioritizedSelector(priorityExponent: 1)
        for k: UInt64 in 0..<3 { s.insert(key: k, priority: 0) }
        var rng = ReplayRandom(seed: 1)
        var counts = [0, 0, 0]
        for _ in 0..<30_000 {
            let p = s.sample(&rng)
            XCTAssertEqual(p.probability, 1.0 / 3)
            counts[Int(p.key)] += 1
        }
        XCTAssertLessThan(chiSquare(observed: counts, expected: [1.0 / 3, 1.0 / 3, 1.0 / 3]), 13.82)  // df 2, p 0.001
    }

    func testGrowsPastInitialCapacityAndRestoresFromOrderedKeys() {
        let s = PrioritizedSelector(priorityExponent: 0.7)
        var priorities: [UInt64: Double] = [:]
        for k: UInt64 in 0..<100 { priorities[k] = Double(k % 7) + 0.25; s.insert(key: k, priority: priorities[k]!) }
        for k: UInt64 in stride(from: 0, to: 100, by: 3) { s.delete(key: k); priorities[k] = nil }
        XCTAssertNil(s.invariantViolation())
        let copy = PrioritizedSelector(priorityExponent: 0.7)
        for k in s.orderedKeys() { copy.insert(key: k, priority: priorities[k]!) }
        var r1 = ReplayRandom(seed: 77), r2 = ReplayRandom(seed: 77)
        for _ in 0..<500 { XCTAssertEqual(s.sample(&r1), copy.sample(&r2)) }
    }
}
