import XCTest
@testable import ReplayStorage

final class MinHeapSelectorTests: XCTestCase {
    func testTopIsTheSmallestPriorityEarliestFirstAfterRandomOperations() {
        let s = MinHeapSelector()
        var rng = ReplayRandom(seed: 0)
        randomOperations(s, seed: 16, steps: 2000, integerPriorities: true) { model in
            XCTAssertNil(s.heap.invariantViolation())
            if !model.items.isEmpty {
                XCTAssertEqual(s.sample(&rng), SelectedKey(key: model.heapTop(max: false), probability: 1))
            }
        }
    }

    func testDrainsInAscendingOrder() {
        let s = MinHeapSelector()
        let priorities: [Double] = [5, 1, 4, 1, 3, 9, 2]
        for (i, p) in priorities.enumerated() { s.insert(key: UInt64(i), priority: p) }
        var rng = ReplayRandom(seed: 0)
        var drained: [UInt64] = []
        while s.count > 0 { let k = s.sample(&rng).key; drained.append(k); s.delete(key: k) }
        XCTAssertEqual(drained, [1, 3, 6, 4, 2, 0, 5])
    }
}
