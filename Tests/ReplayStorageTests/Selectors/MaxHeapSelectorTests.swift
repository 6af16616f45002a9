import XCTest
@testable import ReplayStorage

final class MaxHeapSelectorTests: XCTestCase {
    func testTopIsTheLargestPriorityEarliestFirstAfterRandomOperations() {
        let s = MaxHeapSelector()
        var rng = ReplayRandom(seed: 0)
        // Integer priorities in 0...3 make ties frequent.
        randomOperations(s, seed: 15, steps: 2000, integerPriorities: true) { model in
            XCTAssertNil(s.heap.invariantViolation())
            if !model.items.isEmpty {
                XCTAssertEqual(s.sample(&rng), SelectedKey(key: model.heapTop(max: true), probability: 1))
            }
        }
    }

    func testOrderedKeysReproduceTieBreaks() {
        let s = MaxHeapSelector()
        for k: UInt64 in [4, 2, 9, 7] { s.insert(key: k, priority: 1) }
        s.update(key: 4, priority: 0)
        XCTAssertEqual(s.orderedKeys(), [4, 2, 9, 7])
        var rng = ReplayRandom(seed: 0)
        XCTAssertEqual(s.sample(&rng).key, 2)
        s.update(key: 4, priority: 1)
        XCTAssertEqual(s.sample(&rng).key, 4, "an update keeps the insertion rank for ties")
    }
}
