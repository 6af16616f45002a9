import XCTest
@testable import ReplayStorage

final class FIFOSelectorTests: XCTestCase {
    func testSamplesTheOldestKeyAfterRandomOperations() {
        let s = FIFOSelector()
        var rng = ReplayRandom(seed: 1)
        randomOperations(s, seed: 11, steps: 2000) { model in
            XCTAssertEqual(s.orderedKeys(), model.keys)
            if let first = model.items.first {
                XCTAssertEqual(s.sample(&rng), SelectedKey(key: first.key, probability: 1))
            }
        }
    }

    func testOrderSurvivesReinsertionAndClear() {
        let s = FIFOSelector()
        for k: UInt64 in [5, 3, 9] { s.insert(key: k, priority: 0) }
        s.delete(key: 5)
        s.insert(key: 5, priority: 0)
        XCTAssertEqual(s.orderedKeys(), [3, 9, 5])
        var rng = ReplayRandom(seed: 0)
        XCTAssertEqual(s.sample(&rng).key, 3)
        s.clear()
        XCTAssertEqual(s.count, 0)
        XCTAssertEqual(s.orderedKeys(), [])
    }
}
